package spf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// lookups gives the library the DNS it asks for (its DNSResolver interface)
// through Sluice's resolver, for one check.
//
// The library deals in raw names and strings, as net.Resolver does; the
// resolver, being miekg/dns underneath, in presentation format, where a
// space in a name is "\ " and a byte 0x96 in a TXT string is "\150". Names
// are escaped on the way in and names and strings unescaped on the way out,
// so that records with such bytes are seen as published.
//
// Errors are passed through untouched: the library tells NXDOMAIN from
// temporary failures by asserting *net.DNSError, which the resolver returns.
type lookups struct {
	r *resolver.Resolver
	// ipv6 is the client's address family. The "a", "mx" and "ptr"
	// mechanisms only need the records of that family (RFC 7208 section 5),
	// so IPv4 clients cost no AAAA queries.
	ipv6 bool
}

// LookupTXT returns the TXT records of name, each one's strings joined. An
// SPF record among them that breaks the grammar is an error that is neither
// NXDOMAIN nor temporary, which the library reports as permerror.
func (l *lookups) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := l.r.LookupTXT(ctx, escapeName(name))
	if err != nil {
		return nil, err
	}
	for _, t := range txts {
		if !isSPFRecord(t) {
			continue
		}
		if err := checkRecord(t); err != nil {
			return nil, fmt.Errorf("SPF record of %s: %w", name, err)
		}
	}
	return txts, nil
}

// LookupMX returns the MX records of name, without a null MX (RFC 7505),
// which names no host to authorise.
func (l *lookups) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, err := l.r.LookupMX(ctx, escapeName(name))
	if err != nil {
		return nil, err
	}
	out := mxs[:0]
	for _, mx := range mxs {
		if mx.Host == "." {
			continue
		}
		mx.Host = resolver.Unescape(mx.Host)
		out = append(out, mx)
	}
	return out, nil
}

// LookupIPAddr returns the addresses of host. For an IPv4 client that is its
// A records. For an IPv6 client it is its AAAA and its A records, because
// the library uses this one lookup both for "a", "mx" and "ptr", which want
// AAAA, and for "exists", which always wants A (RFC 7208 section 5.7); the
// two are asked at the same time.
func (l *lookups) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	name := escapeName(host)
	if !l.ipv6 {
		addrs, err := l.r.LookupNetIP(ctx, "ip4", name)
		return ipAddrs(addrs), err
	}
	var v4 []netip.Addr
	var err4 error
	var wg sync.WaitGroup
	wg.Go(func() { v4, err4 = l.r.LookupNetIP(ctx, "ip4", name) })
	v6, err6 := l.r.LookupNetIP(ctx, "ip6", name)
	wg.Wait()
	return ipAddrs(append(v6, v4...)), bothFailed(len(v6)+len(v4), err6, err4)
}

// bothFailed decides the error of the combined A and AAAA lookups that found
// n addresses: none if any addresses were found (one family failing does
// not hide the other's), a temporary failure if either failed so, NXDOMAIN
// if both said so.
func bothFailed(n int, err6, err4 error) error {
	if n > 0 || err6 == nil && err4 == nil {
		return nil
	}
	for _, err := range []error{err6, err4} {
		if de, ok := err.(*net.DNSError); ok && de.Temporary() {
			return err
		}
	}
	if err6 != nil && err4 != nil {
		return err6
	}
	// One family has no records, the other failed permanently: nothing.
	return nil
}

// LookupAddr returns the PTR names of the address addr.
func (l *lookups) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: addr}
	}
	rrs, err := l.r.Query(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if ptr, ok := rr.(*dns.PTR); ok {
			names = append(names, resolver.Unescape(ptr.Ptr))
		}
	}
	return names, nil
}

func ipAddrs(addrs []netip.Addr) []net.IPAddr {
	out := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		out[i] = net.IPAddr{IP: a.AsSlice()}
	}
	return out
}

// escapeName writes the raw name in the presentation format miekg/dns uses
// for names: dots separate labels, the bytes that mean something in a zone
// file are escaped with a backslash, and the unprintable ones as \DDD.
func escapeName(raw string) string {
	var b strings.Builder
	for i := range len(raw) {
		switch c := raw[i]; {
		case c == '.' || (c > ' ' && c <= '~' && !strings.ContainsRune(`'@;()"\`, rune(c))):
			b.WriteByte(c)
		case c >= ' ' && c <= '~':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteString(escapeByte(c))
		}
	}
	return b.String()
}

// escapeByte is the \DDD form of c.
func escapeByte(c byte) string {
	s := strconv.Itoa(int(c))
	return `\` + strings.Repeat("0", 3-len(s)) + s
}
