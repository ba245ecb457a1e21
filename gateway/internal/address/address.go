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

// IsASCII reports whether s is all ASCII: an address that is not needs
// SMTPUTF8 (RFC 6531).
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
