package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// How a client's name was found by VerifiedName: the words of RFC 8601's
// iprev method, except that an address without a PTR record is "none"
// (iprev says permerror), as plugins see it in abi.Request.ClientNameResult.
const (
	NamePass      = "pass"      // a PTR name resolves back to the address
	NameFail      = "fail"      // no PTR name resolves back to it
	NameNone      = "none"      // the address has no PTR record
	NameTempError = "temperror" // DNS failed; asking again may give another answer
)

// MaxPTRNames bounds how many of an address's PTR names VerifiedName
// checks, so that a client's reverse zone cannot make each connection cost
// hundreds of lookups (RFC 8601 section 3 lets a verifier bound this).
const MaxPTRNames = 10

// VerifiedName returns the forward-confirmed reverse DNS name of ip
// (FCrDNS): the first of its PTR names whose A records (AAAA for an IPv6
// address) include ip, lower-cased and without the final dot, with pass;
// otherwise "" and why. The PTR names are checked at the same time. A name
// that resolves back wins over another's DNS failure; a failure with no
// match is temperror, since asking again may find the match.
func (r *Resolver) VerifiedName(ctx context.Context, ip netip.Addr) (name, result string) {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return "", NameNone
	}
	rev, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return "", NameNone
	}
	rrs, _, err := r.lookup(ctx, rev, dns.TypePTR)
	if err != nil {
		if isNotFound(err) {
			return "", NameNone
		}
		return "", NameTempError
	}
	var names []string
	for _, rr := range rrs {
		if ptr, ok := rr.(*dns.PTR); ok && len(names) < MaxPTRNames {
			names = append(names, ptr.Ptr)
		}
	}
	if len(names) == 0 {
		return "", NameNone // NODATA: the name exists, without a PTR record
	}

	network := "ip4"
	if ip.Is6() {
		network = "ip6"
	}
	matched := make([]bool, len(names))
	failed := make([]bool, len(names))
	check := func(i int) {
		addrs, err := r.LookupNetIP(ctx, network, names[i])
		failed[i] = err != nil && !isNotFound(err)
		for _, a := range addrs {
			matched[i] = matched[i] || a == ip
		}
	}
	if len(names) == 1 {
		// Most addresses have one name: looked up here, without a
		// goroutine to start and wait for, once per session.
		check(0)
	} else {
		var wg sync.WaitGroup
		for i := range names {
			wg.Go(func() { check(i) })
		}
		wg.Wait()
	}
	result = NameFail
	for i, n := range names {
		switch {
		case matched[i] && hostname(n):
			return strings.TrimSuffix(dns.CanonicalName(n), "."), NamePass
		case failed[i]:
			result = NameTempError
		}
	}
	return "", result
}

// isNotFound reports an NXDOMAIN, which is an answer, not a failure.
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// hostname reports whether a PTR name is one a host can have: no escaped
// bytes (spaces, quotes, controls), so that it can go into a trace field
// and a plugin's comparisons as it is.
func hostname(name string) bool {
	return !strings.ContainsAny(name, `\"();@ `)
}
