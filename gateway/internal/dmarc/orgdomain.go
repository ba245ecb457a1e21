package dmarc

import (
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/sluice-mail/sluice/gateway/internal/address"
)

// OrganizationalDomain returns the organisational domain of domain (RFC 7489
// §3.2): its public suffix plus one label, in A-labels and lower case. A
// domain that is itself a public suffix is its own organisational domain, as
// is anything that is not a host name (returned in lower case), so that
// comparing two results never matches by accident of both being "".
func OrganizationalDomain(domain string) string {
	if org, ok := registrableDomain(domain); ok {
		return org
	}
	if d, err := address.Domain(strings.TrimSuffix(domain, ".")); err == nil {
		return d
	}
	return strings.ToLower(domain)
}

// registrableDomain is the public suffix plus one label, or false when
// domain is a public suffix or not a host name. The public-suffix list's own
// tests call this "null".
func registrableDomain(domain string) (string, bool) {
	d, err := address.Domain(strings.TrimSuffix(domain, "."))
	if err != nil {
		return "", false
	}
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return "", false
	}
	return org, true
}
