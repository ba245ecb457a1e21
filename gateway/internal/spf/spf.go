// Package spf checks whether a connecting host may send mail for the MAIL
// FROM and HELO identities of a session (SPF, RFC 7208). The evaluation is
// blitiri.com.ar/go/spf; its DNS goes through Sluice's own resolver, so that
// its cache and static records apply.
package spf

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	blitiri "blitiri.com.ar/go/spf"

	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// Result is the outcome of one check.
type Result struct {
	Result string // RFC 8601 words: pass, fail, softfail, neutral, none, temperror, permerror
	Domain string // the domain whose policy was checked
	Reason string // short human reason (e.g. the matching mechanism, or the error) for logs and A-R comments
}

// Checker runs SPF checks. It is safe for concurrent use.
type Checker struct {
	r *resolver.Resolver
}

// New returns a Checker that looks records up through r.
func New(r *resolver.Resolver) *Checker {
	return &Checker{r: r}
}

// MailFrom checks the MAIL FROM identity; for the null sender "" it checks
// postmaster@helo (RFC 7208 section 2.4).
func (c *Checker) MailFrom(ctx context.Context, ip netip.Addr, helo, from string) Result {
	if from == "" {
		from = "postmaster@" + helo
	}
	local, domain := splitAddress(from)
	if local == "" || strings.Contains(local, "@") {
		// RFC 7208 section 4.3: a sender without a local part is
		// postmaster at its domain, which is what the "l" macro must see.
		// A quoted local part holding "@" is treated the same, because
		// the library splits the sender at its first "@" and would check
		// the wrong domain.
		from = "postmaster@" + domain
	}
	return c.check(ctx, ip, helo, from, domain)
}

// Helo checks the HELO identity (RFC 7208 section 2.3); a HELO that is not a
// domain name (an address literal) gives none.
func (c *Checker) Helo(ctx context.Context, ip netip.Addr, helo string) Result {
	return c.check(ctx, ip, helo, "postmaster@"+helo, helo)
}

// check runs check_host() for sender, whose domain is domain.
func (c *Checker) check(ctx context.Context, ip netip.Addr, helo, sender, domain string) Result {
	domain = strings.TrimSuffix(domain, ".")
	if !ip.IsValid() {
		return Result{Result: string(blitiri.PermError), Domain: domain, Reason: "no client address"}
	}
	if reason := checkDomain(domain); reason != "" {
		// RFC 7208 section 4.3: nothing to look up, so no policy.
		return Result{Result: string(blitiri.None), Domain: domain, Reason: reason}
	}
	ip = ip.Unmap() // an IPv4 client on a dual-stack socket is an IPv4 client
	dns := &lookups{r: c.r, ipv6: ip.Is6()}
	res, err := blitiri.CheckHostWithSender(net.IP(ip.AsSlice()), helo, sender,
		blitiri.WithContext(ctx), blitiri.WithResolver(dns))
	if ctx.Err() != nil {
		// Lookups cut short by the context may have been skipped as if
		// they found nothing, so whatever the library concluded is unsure.
		return Result{Result: string(blitiri.TempError), Domain: domain, Reason: "check abandoned: " + ctx.Err().Error()}
	}
	return Result{Result: string(res), Domain: domain, Reason: reason(res, err)}
}

// splitAddress splits an address at its last "@": a quoted local part may
// hold "@", a domain never does. Without "@" it is all domain.
func splitAddress(addr string) (local, domain string) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return "", addr
	}
	return addr[:i], addr[i+1:]
}

// checkDomain says why domain cannot have an SPF policy (RFC 7208 section
// 4.3: malformed, or not a multi-label domain name), or "" if it can.
func checkDomain(domain string) string {
	if strings.HasPrefix(domain, "[") {
		return "not a domain name: address literal"
	}
	if _, err := netip.ParseAddr(domain); err == nil {
		return "not a domain name: IP address"
	}
	if len(domain) > 253 {
		return "not a domain name: longer than 253 octets"
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return "not a multi-label domain name"
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "not a domain name: empty label or label longer than 63 octets"
		}
	}
	return ""
}

// reason turns what the library returned with its result into a short
// phrase for logs and Authentication-Results comments.
func reason(res blitiri.Result, err error) string {
	switch {
	case err == nil && res == blitiri.Neutral:
		return "no mechanism matched"
	case errors.Is(err, blitiri.ErrNoResult):
		return "no SPF record"
	case errors.Is(err, blitiri.ErrMultipleRecords):
		return "more than one SPF record"
	case err == nil:
		return string(res)
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		// Without the server: the resolver's address is no business of
		// whoever reads the Authentication-Results header.
		return "DNS lookup of " + de.Name + ": " + de.Err
	}
	return err.Error()
}
