package resolver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// LookupMX returns the MX records for name sorted by preference, with equal
// preferences in random order to spread load (RFC 5321 section 5.1). Host
// keeps its trailing dot; a Host of "." is a null MX (RFC 7505): the domain
// accepts no mail.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, _, err := r.LookupMXSecure(ctx, name)
	return mxs, err
}

// LookupMXSecure is LookupMX, also saying whether the answer was secure
// (DNSSEC-validated, see Config.DNSSEC), NODATA included.
func (r *Resolver) LookupMXSecure(ctx context.Context, name string) ([]*net.MX, bool, error) {
	rrs, secure, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, false, err
	}
	mxs := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx, ok := rr.(*dns.MX)
		if !ok {
			return nil, false, wrongRecord(name, rr)
		}
		mxs = append(mxs, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return mxs, secure, nil
}

// LookupNetIP returns the addresses of host: network "ip6" asks for AAAA
// records, "ip4" for A records.
func (r *Resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	addrs, _, err := r.LookupNetIPSecure(ctx, network, host)
	return addrs, err
}

// LookupNetIPSecure is LookupNetIP, also saying whether the answer was
// secure (DNSSEC-validated, see Config.DNSSEC), NODATA included.
func (r *Resolver) LookupNetIPSecure(ctx context.Context, network, host string) ([]netip.Addr, bool, error) {
	var qtype uint16
	switch network {
	case "ip4":
		qtype = dns.TypeA
	case "ip6":
		qtype = dns.TypeAAAA
	default:
		return nil, false, &net.DNSError{Err: fmt.Sprintf("network %q: want ip4 or ip6", network), Name: host}
	}
	rrs, secure, err := r.lookup(ctx, host, qtype)
	if err != nil {
		return nil, false, err
	}
	addrs := make([]netip.Addr, 0, len(rrs))
	for _, rr := range rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A.To4()
		case *dns.AAAA:
			ip = rr.AAAA.To16()
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			return nil, false, wrongRecord(host, rr)
		}
		addrs = append(addrs, addr)
	}
	return addrs, secure, nil
}

// LookupTXT returns the TXT records for name, each record's strings joined
// into one (as SPF, DKIM and DMARC records are read).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, _, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	txts := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		txt, ok := rr.(*dns.TXT)
		if !ok {
			return nil, wrongRecord(name, rr)
		}
		// miekg keeps character strings in presentation format; callers
		// want the bytes the record holds.
		txts = append(txts, Unescape(strings.Join(txt.Txt, "")))
	}
	return txts, nil
}

// LookupTLSA returns the TLSA records for name (e.g.
// "_25._tcp.mx.example.com"), and whether the answer was secure
// (DNSSEC-validated, see Config.DNSSEC), NODATA included. The records are
// copies the caller may keep.
func (r *Resolver) LookupTLSA(ctx context.Context, name string) ([]*dns.TLSA, bool, error) {
	rrs, secure, err := r.lookup(ctx, name, dns.TypeTLSA)
	if err != nil {
		return nil, false, err
	}
	out := make([]*dns.TLSA, 0, len(rrs))
	for _, rr := range rrs {
		tlsa, ok := rr.(*dns.TLSA)
		if !ok {
			return nil, false, wrongRecord(name, rr)
		}
		out = append(out, dns.Copy(tlsa).(*dns.TLSA))
	}
	return out, secure, nil
}

// wrongRecord reports a record whose data does not fit its type, which only
// a broken server or static line can produce.
func wrongRecord(name string, rr dns.RR) error {
	return &net.DNSError{Err: fmt.Sprintf("bad answer: unusable record %q", rr.String()), Name: name, IsTemporary: true}
}

// Unescape turns a name or character string in presentation format back
// into its raw bytes: \DDD is the byte DDD, \X is X.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		if n, ok := decimalByte(s[i+1:]); ok {
			b.WriteByte(n)
			i += 3
			continue
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

// decimalByte reads a DDD escape (three decimal digits, at most 255) at the
// start of s.
func decimalByte(s string) (byte, bool) {
	if len(s) < 3 {
		return 0, false
	}
	n, err := strconv.ParseUint(s[:3], 10, 8)
	if err != nil {
		return 0, false
	}
	return byte(n), true
}
