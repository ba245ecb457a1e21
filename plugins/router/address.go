package main

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// idnaProfile is the gateway's own (gateway/internal/address), so that the
// router finds a domain where the gateway does: U-labels mapped as for a
// lookup, then checked as for a registration.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.ValidateForRegistration())

// domainKey converts a recipient's domain to the form the table keys it
// by: lower case ASCII, internationalised labels as A-labels. ASCII names
// (A-labels included) skip IDNA, which every recipient would otherwise pay
// for: the gateway has checked the recipient's domain before the router
// sees it.
func domainKey(d string) (string, error) {
	if isASCII(d) {
		return asciiLower(d), nil
	}
	a, err := idnaProfile.ToASCII(strings.ToLower(d))
	if err != nil {
		return "", err
	}
	return a, nil
}

// checkedDomain is domainKey for a domain from the config, with the checks
// IDNA leaves to the caller: a config's domain is not yet checked by anyone.
func checkedDomain(d string) (string, error) {
	if d == "" || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return "", errors.New("empty label")
	}
	if isASCII(d) && !strings.Contains(d, "--") {
		// What IDNA would return but for its checks, which follow, at a
		// fraction of its cost: destinations made by substitution are
		// checked for each recipient.
		d = asciiLower(d)
		if err := checkLabels(d); err != nil {
			return "", err
		}
		return d, nil
	}
	a, err := idnaProfile.ToASCII(strings.ToLower(d))
	if err != nil {
		return "", err
	}
	if err := checkLabels(a); err != nil {
		return "", err
	}
	return a, nil
}

// checkLabels checks the labels of an ASCII domain: 1 to 63 letters,
// digits and hyphens, with no hyphen first or last.
func checkLabels(a string) error {
	if len(a) > 253 {
		return errors.New("longer than 253 characters")
	}
	for label := range strings.SplitSeq(a, ".") {
		if len(label) == 0 {
			return errors.New("empty label")
		}
		if len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("bad label %q", label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("bad label %q", label)
			}
		}
	}
	return nil
}

// unicodeForm returns the domain key's U-label form, or "" if it has
// none (no A-labels), for patterns written with either form.
func unicodeForm(key string) string {
	if !strings.Contains(key, "xn--") {
		return ""
	}
	u, err := idna.Lookup.ToUnicode(key)
	if err != nil || u == key {
		return ""
	}
	return u
}

// localForm is a local part as the table compares it: Unicode NFC (a
// client may send "é" as e and a combining accent), ASCII letters in lower
// case. Other letters are compared exactly: case folding beyond ASCII
// depends on the language (RFC 6530 leaves local parts to the mailbox's
// owner). The result has the same length as an NFC input, byte for byte,
// so that offsets found in it hold in the NFC text too.
func localForm(local string) string {
	if !isASCII(local) {
		local = norm.NFC.String(local)
	}
	return asciiLower(local)
}

// withoutDots removes the dots of a local part, for domains whose
// mailboxes ignore them (first.last = firstlast).
func withoutDots(local string) string {
	if !strings.Contains(local, ".") {
		return local
	}
	return strings.ReplaceAll(local, ".", "")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiLower lowers the ASCII letters of s and leaves every other byte as
// it is, so that lengths and offsets are kept.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// splitAddress splits local@domain at its last @; both parts must be
// non-empty and free of spaces and angle brackets.
func splitAddress(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 || strings.ContainsAny(addr, " \t\r\n<>") {
		return "", "", false
	}
	return addr[:i], addr[i+1:], true
}

// checkDestination says why addr cannot be forwarded to, or nil: its local
// part must be a dot-atom (RFC 5321 section 4.1.2; UTF-8 allowed, RFC
// 6531) of at most 64 octets and its domain a host name. It is what a
// destination made by substitution must pass before it is handed on.
func checkDestination(addr string) error {
	local, domain, ok := splitAddress(addr)
	if !ok {
		return fmt.Errorf("%q is not local@domain", addr)
	}
	if len(local) > 64 {
		return fmt.Errorf("%q: the local part is longer than 64 octets", addr)
	}
	if !isDotAtom(local) {
		return fmt.Errorf("%q: the local part is not a dot-atom", addr)
	}
	if _, err := checkedDomain(domain); err != nil {
		return fmt.Errorf("%q: bad domain: %v", addr, err)
	}
	return nil
}

// isDotAtom reports whether s is atext (or UTF-8 beyond ASCII) in dot
// separated, non-empty runs.
func isDotAtom(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	prev := byte('.')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' && prev == '.' {
			return false
		}
		if c != '.' && c < utf8.RuneSelf && !isAtext(c) {
			return false
		}
		prev = c
	}
	return prev != '.'
}

func isAtext(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
