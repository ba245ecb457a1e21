package abi

import (
	"fmt"
	"strconv"
	"strings"
)

// CheckReply checks an SMTP reply code and enhanced status code as a
// plugin may give them for Reject or Tempfail: the code is 4xx or 5xx, and
// the enhanced code, if not empty, is class.subject.detail (RFC 3463) with
// the same class as the code. Host and SDK share it so that what a plugin
// accepts in its config is what the host accepts in its verdicts.
func CheckReply(code uint16, enhanced string) error {
	if code < 400 || code > 599 {
		return fmt.Errorf("reply code %d is not 4xx or 5xx", code)
	}
	if enhanced == "" {
		return nil
	}
	class, _, _, ok := ParseEnhanced(enhanced)
	if !ok {
		return fmt.Errorf("enhanced code %q is not class.subject.detail", enhanced)
	}
	if class != int(code/100) {
		return fmt.Errorf("enhanced code %s does not match reply code %d", enhanced, code)
	}
	return nil
}

// ParseEnhanced parses an enhanced status code "class.subject.detail"
// (RFC 3463): class 2, 4 or 5, subject and detail of one to three digits.
func ParseEnhanced(s string) (class, subject, detail int, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 || (i == 0 && len(p) != 1) {
			return 0, 0, 0, false
		}
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p[0] == '+' {
			return 0, 0, 0, false
		}
		n[i] = v
	}
	if n[0] != 2 && n[0] != 4 && n[0] != 5 {
		return 0, 0, 0, false
	}
	return n[0], n[1], n[2], true
}
