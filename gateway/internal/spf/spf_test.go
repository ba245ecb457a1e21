package spf

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

const zone = `
$TTL 300
$ORIGIN example.test.
@            IN SOA ns admin 1 3600 600 86400 60
@            IN TXT "v=spf1 ip4:192.0.2.1 include:_spf.example.test -all"
@            IN TXT "google-site-verification=not-spf"
_spf         IN TXT "v=spf1 a:mail.example.test ip6:2001:db8::/32 -all"
mail         IN A    192.0.2.25
mail         IN AAAA 2001:db8:1::25
helo         IN TXT "v=spf1 exists:%{l}.allow.example.test -all"
postmaster.allow IN A 127.0.0.2
soft         IN TXT "v=spf1 ~all"
broken       IN TXT "v=spf1 ip4:192.0.2.1 -all foo=%x"
twice        IN TXT "v=spf1 -all"
twice        IN TXT "v=spf1 +all"
nospf        IN TXT "just text"
slow         IN TXT "v=spf1 a:timeout.example.test -all"
a            IN TXT "v=spf1 a:mail.example.test -all"
exists       IN TXT "v=spf1 exists:postmaster.allow.example.test -all"
`

// newChecker serves zone on loopback and returns a Checker resolving
// through it, with a short timeout so dropped queries end quickly.
func newChecker(t testing.TB) (*Checker, *dnstest.Server) {
	t.Helper()
	srv := dnstest.Start(t, zone)
	r, err := resolver.New(resolver.Config{Nameservers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return New(r), srv
}

func want(t *testing.T, got Result, result, domain, reason string) {
	t.Helper()
	if got.Result != result || got.Domain != domain || !strings.Contains(got.Reason, reason) {
		t.Errorf("got %+v, want %s for %s with a reason saying %q", got, result, domain, reason)
	}
}

func TestMailFrom(t *testing.T) {
	c, _ := newChecker(t)
	ctx := context.Background()
	ip := netip.MustParseAddr
	tests := []struct {
		name, ip, from         string
		result, domain, reason string
	}{
		{"ip4 match", "192.0.2.1", "alice@example.test", "pass", "example.test", "matched ip"},
		{"through include and a", "192.0.2.25", "alice@Example.Test", "pass", "Example.Test", "matched a"},
		{"ip6 through include", "2001:db8:5::1", "alice@example.test", "pass", "example.test", "matched ip"},
		{"ip4-mapped is ip4", "::ffff:192.0.2.1", "alice@example.test", "pass", "example.test", "matched ip"},
		{"not listed", "198.51.100.1", "alice@example.test", "fail", "example.test", "matched all"},
		{"softfail", "198.51.100.1", "bob@soft.example.test", "softfail", "soft.example.test", "matched all"},
		{"trailing dot", "198.51.100.1", "bob@soft.example.test.", "softfail", "soft.example.test", "matched all"},
		{"no SPF record", "192.0.2.1", "carol@nospf.example.test", "none", "nospf.example.test", "no SPF record"},
		{"NXDOMAIN", "192.0.2.1", "carol@missing.example.test", "none", "missing.example.test", "no SPF record"},
		{"syntax error after the match", "192.0.2.1", "dave@broken.example.test", "permerror", "broken.example.test", `bad macro "%x"`},
		{"two records", "192.0.2.1", "dave@twice.example.test", "permerror", "twice.example.test", "more than one SPF record"},
		{"address literal", "192.0.2.1", "erin@[192.0.2.1]", "none", "[192.0.2.1]", "address literal"},
		{"single label", "192.0.2.1", "erin@localhost", "none", "localhost", "multi-label"},
		{"quoted @ in local part", "192.0.2.1", `"a@b"@example.test`, "pass", "example.test", "matched ip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := c.MailFrom(ctx, ip(tc.ip), "mx.client.test", tc.from)
			want(t, got, tc.result, tc.domain, tc.reason)
		})
	}
}

// The policy at helo.example.test passes only when the "l" macro expands to
// postmaster, which shows which sender the check used.
func TestNullSenderIsPostmasterAtHelo(t *testing.T) {
	c, _ := newChecker(t)
	ctx := context.Background()
	ip := netip.MustParseAddr("198.51.100.7")

	want(t, c.MailFrom(ctx, ip, "helo.example.test", ""), "pass", "helo.example.test", "matched exists")
	want(t, c.MailFrom(ctx, ip, "helo.example.test", "@helo.example.test"), "pass", "helo.example.test", "matched exists")
	want(t, c.MailFrom(ctx, ip, "other.example.test", "someone@helo.example.test"), "fail", "helo.example.test", "matched all")
}

func TestHelo(t *testing.T) {
	c, srv := newChecker(t)
	ctx := context.Background()
	ip := netip.MustParseAddr

	want(t, c.Helo(ctx, ip("198.51.100.7"), "helo.example.test"), "pass", "helo.example.test", "matched exists")
	want(t, c.Helo(ctx, ip("192.0.2.25"), "example.test"), "pass", "example.test", "matched a")
	want(t, c.Helo(ctx, ip("198.51.100.7"), "example.test"), "fail", "example.test", "matched all")

	before := srv.Queries()
	for _, helo := range []string{"[192.0.2.1]", "[IPv6:2001:db8::1]", "192.0.2.1", "OEMCOMPUTER", ""} {
		got := c.Helo(ctx, ip("192.0.2.1"), helo)
		if got.Result != "none" || got.Reason == "" {
			t.Errorf("HELO %q: got %+v, want none with a reason", helo, got)
		}
	}
	if n := srv.Queries() - before; n != 0 {
		t.Errorf("HELO names that are not domains cost %d queries, want none", n)
	}
}

func TestDNSFailureIsTemperror(t *testing.T) {
	c, srv := newChecker(t)
	srv.Drop("timeout.example.test.")
	srv.Drop("gone.example.test.")
	srv.Fail("broken.example.test.", dns.RcodeServerFailure)
	ip := netip.MustParseAddr("192.0.2.1")

	want(t, c.MailFrom(context.Background(), ip, "h.test", "a@broken.example.test"), "temperror", "broken.example.test", "SERVFAIL")

	// The resolver's own timeout ends the lookup of the SPF record itself...
	want(t, c.MailFrom(context.Background(), ip, "h.test", "a@gone.example.test"), "temperror", "gone.example.test", "timeout")
	// ...and of a name a mechanism needs.
	want(t, c.MailFrom(context.Background(), ip, "h.test", "a@slow.example.test"), "temperror", "slow.example.test", "timeout")
}

func TestContextEndsTheCheck(t *testing.T) {
	srv := dnstest.Start(t, zone)
	srv.Drop("timeout.example.test.")
	// Only the context can end this lookup in time.
	r, err := resolver.New(resolver.Config{Nameservers: []string{srv.Addr()}, Timeout: time.Hour, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := New(r)
	ip := netip.MustParseAddr("192.0.2.1")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	want(t, c.MailFrom(ctx, ip, "h.test", "a@slow.example.test"), "temperror", "slow.example.test", "deadline exceeded")

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	want(t, c.MailFrom(ctx, ip, "h.test", "a@example.test"), "temperror", "example.test", "canceled")
}

func TestAddressFamilies(t *testing.T) {
	c, srv := newChecker(t)
	ctx := context.Background()

	// An IPv4 client needs the TXT record and the A records, no AAAA.
	want(t, c.MailFrom(ctx, netip.MustParseAddr("192.0.2.99"), "h.test", "x@a.example.test"), "fail", "a.example.test", "matched all")
	if n := srv.Queries(); n != 2 {
		t.Errorf("IPv4 client: %d queries, want 2 (TXT, A)", n)
	}
	// For an IPv6 client "a" matches on AAAA records...
	want(t, c.MailFrom(ctx, netip.MustParseAddr("2001:db8:1::25"), "h.test", "x@a.example.test"), "pass", "a.example.test", "matched a")
	want(t, c.MailFrom(ctx, netip.MustParseAddr("2001:db8:1::26"), "h.test", "x@a.example.test"), "fail", "a.example.test", "matched all")
	// ...while "exists" still asks for A records (RFC 7208 section 5.7),
	// here of a name that has no AAAA.
	want(t, c.MailFrom(ctx, netip.MustParseAddr("2001:db8:9::1"), "h.test", "x@exists.example.test"), "pass", "exists.example.test", "matched exists")
}

func TestResolverStaticRecordsAndCache(t *testing.T) {
	srv := dnstest.Start(t, zone)
	r, err := resolver.New(resolver.Config{
		Nameservers: []string{srv.Addr()},
		Static:      []string{`static.test. 300 IN TXT "v=spf1 ip4:203.0.113.5 -all"`},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := New(r)
	ctx := context.Background()
	want(t, c.MailFrom(ctx, netip.MustParseAddr("203.0.113.5"), "h.test", "a@static.test"), "pass", "static.test", "matched ip")
	if n := srv.Queries(); n != 0 {
		t.Errorf("static record: %d queries to the server, want 0", n)
	}

	ip := netip.MustParseAddr("192.0.2.25")
	want(t, c.MailFrom(ctx, ip, "h.test", "a@example.test"), "pass", "example.test", "matched a")
	n := srv.Queries()
	want(t, c.MailFrom(ctx, ip, "h.test", "a@example.test"), "pass", "example.test", "matched a")
	if again := srv.Queries() - n; again != 0 {
		t.Errorf("second check: %d queries, want 0 (all cached)", again)
	}
}

func TestInvalidClientAddress(t *testing.T) {
	c, _ := newChecker(t)
	want(t, c.MailFrom(context.Background(), netip.Addr{}, "h.test", "a@example.test"), "permerror", "example.test", "no client address")
}

func BenchmarkMailFromCached(b *testing.B) {
	c, _ := newChecker(b)
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.25") // matched by a: inside the include
	if got := c.MailFrom(ctx, ip, "h.test", "a@example.test"); got.Result != "pass" {
		b.Fatalf("got %+v", got)
	}
	for b.Loop() {
		c.MailFrom(ctx, ip, "h.test", "a@example.test")
	}
}

func BenchmarkMailFromCachedParallel(b *testing.B) {
	c, _ := newChecker(b)
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.25")
	if got := c.MailFrom(ctx, ip, "h.test", "a@example.test"); got.Result != "pass" {
		b.Fatalf("got %+v", got)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.MailFrom(ctx, ip, "h.test", "a@example.test")
		}
	})
}
