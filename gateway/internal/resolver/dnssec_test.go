package resolver

import (
	"context"
	"testing"

	"github.com/miekg/dns"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
)

// signedZone has a part dnstest vouches for with AD, as a validating
// resolver does for a signed zone, and a part it does not.
const signedZone = zone + `
signed.test.                IN SOA ns.signed.test. admin.signed.test. 1 3600 600 86400 60
signed.test.                IN MX 10 mx.signed.test.
mx.signed.test.             IN A 192.0.2.25
_25._tcp.mx.signed.test.    IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
_25._tcp.mx.signed.test.    IN TLSA 2 0 1 fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210
_25._tcp.host.example.test. IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
`

func TestDNSSECSecureFlag(t *testing.T) {
	s := dnstest.Start(t, signedZone)
	s.Authenticate("signed.test.")
	ctx := context.Background()
	r := newResolver(t, Config{DNSSEC: true}, s.Addr())

	// dnstest sets AD only when the question asks for it, so a secure
	// answer also shows that the resolver asked.
	if mxs, secure, err := r.LookupMXSecure(ctx, "signed.test"); err != nil || len(mxs) != 1 || !secure {
		t.Errorf("signed MX = %v, secure %v, %v; want one secure record", mxs, secure, err)
	}
	if addrs, secure, err := r.LookupNetIPSecure(ctx, "ip4", "mx.signed.test"); err != nil || len(addrs) != 1 || !secure {
		t.Errorf("signed A = %v, secure %v, %v; want one secure address", addrs, secure, err)
	}
	if addrs, secure, err := r.LookupNetIPSecure(ctx, "ip6", "mx.signed.test"); err != nil || len(addrs) != 0 || !secure {
		t.Errorf("signed AAAA = %v, secure %v, %v; want a secure NODATA", addrs, secure, err)
	}
	tlsa, secure, err := r.LookupTLSA(ctx, "_25._tcp.mx.signed.test")
	if err != nil || len(tlsa) != 2 || !secure {
		t.Fatalf("signed TLSA = %v, secure %v, %v; want two secure records", tlsa, secure, err)
	}
	if tlsa[0].Usage != 3 || tlsa[0].Selector != 1 || tlsa[0].MatchingType != 1 || tlsa[1].Usage != 2 {
		t.Errorf("TLSA records = %v", tlsa)
	}
	if mxs, secure, err := r.LookupMXSecure(ctx, "example.test"); err != nil || len(mxs) != 4 || secure {
		t.Errorf("unsigned MX = %v, secure %v, %v; want four insecure records", mxs, secure, err)
	}
	if tlsa, secure, err := r.LookupTLSA(ctx, "_25._tcp.host.example.test"); err != nil || len(tlsa) != 1 || secure {
		t.Errorf("unsigned TLSA = %v, secure %v, %v; want one insecure record", tlsa, secure, err)
	}

	// The cache keeps the flag with the answer.
	before := s.Queries()
	if _, secure, err := r.LookupMXSecure(ctx, "signed.test"); err != nil || !secure {
		t.Errorf("cached signed MX: secure %v, %v; want secure", secure, err)
	}
	if _, secure, err := r.LookupMXSecure(ctx, "example.test"); err != nil || secure {
		t.Errorf("cached unsigned MX: secure %v, %v; want insecure", secure, err)
	}
	if s.Queries() != before {
		t.Errorf("%d queries for cached answers", s.Queries()-before)
	}
}

func TestDNSSECOffNeverSecure(t *testing.T) {
	s := dnstest.Start(t, signedZone)
	s.Authenticate("signed.test.")
	r := newResolver(t, Config{Static: []string{"static.test. 300 IN MX 10 mx.signed.test."}}, s.Addr())
	ctx := context.Background()
	if _, secure, err := r.LookupMXSecure(ctx, "signed.test"); err != nil || secure {
		t.Errorf("MX without dnssec: secure %v, %v; want insecure", secure, err)
	}
	if _, secure, err := r.LookupTLSA(ctx, "_25._tcp.mx.signed.test"); err != nil || secure {
		t.Errorf("TLSA without dnssec: secure %v, %v; want insecure", secure, err)
	}
	if _, secure, err := r.LookupMXSecure(ctx, "static.test"); err != nil || secure {
		t.Errorf("static MX without dnssec: secure %v, %v; want insecure", secure, err)
	}
}

func TestDNSSECStaticRecordsAreSecure(t *testing.T) {
	s := dnstest.Start(t, signedZone)
	r := newResolver(t, Config{DNSSEC: true, Static: []string{"static.test. 300 IN MX 10 mx.signed.test."}}, s.Addr())
	if _, secure, err := r.LookupMXSecure(context.Background(), "static.test"); err != nil || !secure {
		t.Errorf("static MX with dnssec: secure %v, %v; want secure: the configuration is trusted", secure, err)
	}
}

func TestDNSSECFailureIsAnError(t *testing.T) {
	s := dnstest.Start(t, signedZone)
	s.Authenticate("signed.test.")
	s.Fail("_25._tcp.mx.signed.test.", dns.RcodeServerFailure) // what a validator says of a bogus answer
	r := newResolver(t, Config{DNSSEC: true, Attempts: 1}, s.Addr())
	_, secure, err := r.LookupTLSA(context.Background(), "_25._tcp.mx.signed.test")
	if de := dnsError(t, err); !de.IsTemporary || secure {
		t.Errorf("SERVFAIL TLSA: %+v, secure %v; want a temporary error", de, secure)
	}
}

func TestReconfiguredDNSSECChangeStartsAFreshCache(t *testing.T) {
	s := dnstest.Start(t, signedZone)
	s.Authenticate("signed.test.")
	ctx := context.Background()
	off := newResolver(t, Config{}, s.Addr())
	if _, secure, err := off.LookupMXSecure(ctx, "signed.test"); err != nil || secure {
		t.Fatalf("MX without dnssec: secure %v, %v", secure, err)
	}
	on, err := off.Reconfigured(Config{Nameservers: []string{s.Addr()}, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, secure, err := on.LookupMXSecure(ctx, "signed.test"); err != nil || !secure {
		t.Errorf("MX after turning dnssec on: secure %v, %v; want secure, asked again rather than from the cache", secure, err)
	}
	if n := s.Queries(); n != 2 {
		t.Errorf("server got %d queries, want 2", n)
	}
	same, err := on.Reconfigured(Config{Nameservers: []string{s.Addr()}, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, secure, err := same.LookupMXSecure(ctx, "signed.test"); err != nil || !secure || s.Queries() != 2 {
		t.Errorf("MX after a reload keeping dnssec: secure %v, %v, %d queries; want secure from the cache", secure, err, s.Queries())
	}
}
