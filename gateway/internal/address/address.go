// Package address splits and normalises mailbox addresses and domain
// names, so that every part of the gateway compares them the same way.
package address

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/net/idna"
)

var (
	labelRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.ValidateForRegistration())
)

// Domain converts a domain to the form Sluice compares: ASCII (A-labels
// for internationalised names), lower case, no final dot. It refuses
// anything that is not a host name, address literals included.
func Domain(d string) (string, error) {
	if d == "" || strings.HasSuffix(d, ".") || strings.HasPrefix(d, ".") {
		return "", errors.New("empty label")
	}
	if isPlainHostName(d) {
		// What IDNA would return, at a tenth of its cost: every MAIL and
		// RCPT goes through here.
		return strings.ToLower(d), nil
	}
	return idnaDomain(d)
}

// idnaDomain is Domain for the names that need IDNA's mapping and checks.
func idnaDomain(d string) (string, error) {
	name, err := idnaProfile.ToASCII(strings.ToLower(d))
	if err != nil {
		return "", err
	}
	if len(name) > 253 {
		return "", errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) > 63 || !labelRE.MatchString(label) {
			return "", fmt.Errorf("bad label %q", label)
		}
	}
	return name, nil
}

// isPlainHostName reports whether d is a host name that IDNA leaves as
// it is but for case: ASCII letters, digits and hyphens in labels of 1 to
// 63 characters, at most 253 in all, no label starting or ending with a
// hyphen or with hyphens in its third and fourth places (which is where
// "xn--" marks an A-label, which IDNA must check).
func isPlainHostName(d string) bool {
	if len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		n := len(label)
		if n == 0 || n > 63 || label[0] == '-' || label[n-1] == '-' || (n >= 4 && label[2] == '-' && label[3] == '-') {
			return false
		}
		for i := 0; i < n; i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Split splits a mailbox at its last '@'. The local part is returned as
// given; the domain is normalised with Domain.
func Split(addr string) (local, domain string, err error) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", "", fmt.Errorf("%q is not a mailbox (local@domain)", addr)
	}
	domain, err = Domain(addr[i+1:])
	if err != nil {
		return "", "", fmt.Errorf("%q: bad domain: %v", addr, err)
	}
	return addr[:i], domain, nil
}

// NeedsSMTPUTF8 reports whether addr can only be sent in a transaction
// with SMTPUTF8 (RFC 6531): its local part is not ASCII. A domain never
// needs it, as its A-labels (WithASCIIDomain) name the same domain. The
// null reverse-path ("") needs nothing. Whether a whole message needs
// SMTPUTF8 is message.NeedsSMTPUTF8, which uses this.
func NeedsSMTPUTF8(addr string) bool {
	local := addr
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local = addr[:i]
	}
	return !IsASCII(local)
}

// WithASCIIDomain returns addr with its domain as A-labels, for a
// transaction without SMTPUTF8: piñata@piñata.example cannot go there,
// but info@piñata.example goes as info@xn--piata-pta.example. An address
// whose domain is ASCII already is returned as it is, byte for byte, and
// so is the null reverse-path.
func WithASCIIDomain(addr string) (string, error) {
	i := strings.LastIndexByte(addr, '@')
	if IsASCII(addr[i+1:]) {
		return addr, nil
	}
	local, domain, err := Split(addr)
	if err != nil {
		return "", err
	}
	return local + "@" + domain, nil
}

// IsASCII reports whether s is all ASCII: an address that is not needs
// SMTPUTF8 (RFC 6531) unless only its domain is not (WithASCIIDomain).
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
