package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
)

const zone = `
$TTL 300
example.test.        IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60
example.test.        IN MX 20 c.mx.example.test.
example.test.        IN MX 10 a.mx.example.test.
example.test.        IN MX 10 b.mx.example.test.
example.test.        IN MX 30 d.mx.example.test.
null.example.test.   IN MX 0 .
host.example.test.   IN A 192.0.2.1
host.example.test.   IN A 192.0.2.2
host.example.test.   IN AAAA 2001:db8::1
alias.example.test.  IN CNAME host.example.test.
txt.example.test.    IN TXT "v=spf1 " "ip4:192.0.2.0/24 " "-all"
txt.example.test.    IN TXT "second"
nosoa.test.          IN A 192.0.2.9
`

// newClock is a settable Config.Now at the start of 2025.
func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) }

// newResolver builds a Resolver on the given servers with a test clock.
func newResolver(t testing.TB, c Config, servers ...string) *Resolver {
	t.Helper()
	c.Nameservers = servers
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// dnsError asserts that err is a *net.DNSError and returns it.
func dnsError(t *testing.T, err error) *net.DNSError {
	t.Helper()
	var de *net.DNSError
	if !errors.As(err, &de) {
		t.Fatalf("err = %T %v, want *net.DNSError", err, err)
	}
	return de
}

func TestLookupMXSortedByPreference(t *testing.T) {
	s := dnstest.Start(t, zone)
	r := newResolver(t, Config{}, s.Addr())
	seen := map[string]bool{}
	for range 100 {
		mxs, err := r.LookupMX(context.Background(), "example.test") // no trailing dot
		if err != nil {
			t.Fatal(err)
		}
		var hosts []string
		for _, mx := range mxs {
			hosts = append(hosts, mx.Host)
		}
		order := strings.Join(hosts, " ")
		if order != "a.mx.example.test. b.mx.example.test. c.mx.example.test. d.mx.example.test." &&
			order != "b.mx.example.test. a.mx.example.test. c.mx.example.test. d.mx.example.test." {
			t.Fatalf("MX order %s, want by preference", order)
		}
		if mxs[0].Pref != 10 || mxs[3].Pref != 30 {
			t.Fatalf("preferences %d..%d, want 10..30", mxs[0].Pref, mxs[3].Pref)
		}
		seen[order] = true
	}
	// The two preference-10 hosts must come in both orders (chance of a
	// false failure: 2^-99).
	if len(seen) != 2 {
		t.Errorf("equal preferences never shuffled: saw only %v", seen)
	}
}

func TestNullMX(t *testing.T) {
	s := dnstest.Start(t, zone)
	r := newResolver(t, Config{}, s.Addr())
	mxs, err := r.LookupMX(context.Background(), "null.example.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(mxs) != 1 || mxs[0].Host != "." || mxs[0].Pref != 0 {
		t.Fatalf("null MX = %v, want one MX 0 \".\"", mxs)
	}
}

func TestLookupNetIP(t *testing.T) {
	s := dnstest.Start(t, zone)
	r := newResolver(t, Config{}, s.Addr())
	ctx := context.Background()
	v4, err := r.LookupNetIP(ctx, "ip4", "host.example.test")
	if err != nil {
		t.Fatal(err)
	}
	want4 := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}
	if !slices.Equal(v4, want4) {
		t.Errorf("ip4 = %v, want %v", v4, want4)
	}
	if !v4[0].Is4() {
		t.Errorf("ip4 address %v is not a 4-byte address", v4[0])
	}
	v6, err := r.LookupNetIP(ctx, "ip6", "alias.example.test") // through the CNAME
	if err != nil {
		t.Fatal(err)
	}
	if want6 := []netip.Addr{netip.MustParseAddr("2001:db8::1")}; !slices.Equal(v6, want6) {
		t.Errorf("ip6 = %v, want %v", v6, want6)
	}
	if _, err := r.LookupNetIP(ctx, "tcp", "host.example.test"); err == nil {
		t.Error("network tcp accepted")
	}
}

func TestLookupTXTJoinsStrings(t *testing.T) {
	s := dnstest.Start(t, zone)
	r := newResolver(t, Config{}, s.Addr())
	txts, err := r.LookupTXT(context.Background(), "txt.example.test.")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(txts)
	want := []string{"second", "v=spf1 ip4:192.0.2.0/24 -all"}
	if !slices.Equal(txts, want) {
		t.Fatalf("TXT = %q, want %q", txts, want)
	}
}

func TestQueryFollowsCNAME(t *testing.T) {
	s := dnstest.Start(t, zone)
	r := newResolver(t, Config{}, s.Addr())
	rrs, err := r.Query(context.Background(), "alias.example.test.", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if len(rrs) != 2 {
		t.Fatalf("answer %v, want the 2 A records of the CNAME target", rrs)
	}
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeA || rr.Header().Name != "host.example.test." {
			t.Errorf("record %v, want A for host.example.test.", rr)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	s := dnstest.Start(t, zone)
	s.Fail("broken.example.test.", dns.RcodeServerFailure)
	r := newResolver(t, Config{}, s.Addr())
	ctx := context.Background()

	_, err := r.LookupMX(ctx, "missing.example.test.")
	if de := dnsError(t, err); !de.IsNotFound || de.IsTemporary || de.IsTimeout {
		t.Errorf("NXDOMAIN: %+v, want IsNotFound only", de)
	}

	mxs, err := r.LookupMX(ctx, "host.example.test.")
	if err != nil || len(mxs) != 0 {
		t.Errorf("NODATA: %v, %v; want empty and nil", mxs, err)
	}

	_, err = r.LookupMX(ctx, "broken.example.test.")
	if de := dnsError(t, err); !de.IsTemporary || de.IsNotFound {
		t.Errorf("SERVFAIL: %+v, want IsTemporary and not IsNotFound", de)
	} else if !strings.Contains(de.Error(), "SERVFAIL") || de.Server != s.Addr() {
		t.Errorf("SERVFAIL error %q (server %q) does not say what and where", de.Error(), de.Server)
	}

	_, err = r.LookupMX(ctx, "bad..name")
	if de := dnsError(t, err); !de.IsNotFound {
		t.Errorf("invalid name: %+v, want IsNotFound", de)
	}
}

func TestStaticRecordsAnswerFirst(t *testing.T) {
	s := dnstest.Start(t, zone+`
inbox.test. 300 IN MX 10 from-dns.inbox.test.
inbox.test. 300 IN A 192.0.2.200
`)
	r := newResolver(t, Config{Static: []string{
		"inbox.test. 300 IN MX 10 mx.inbox.test.",
		"",
		"; a comment line",
		"mx.inbox.test. 300 IN A 127.0.0.1",
		"Mail.Inbox.Test. 300 IN CNAME mx.inbox.test.",
		"out.inbox.test. 300 IN CNAME host.example.test.",
	}}, s.Addr())
	ctx := context.Background()

	mxs, err := r.LookupMX(ctx, "INBOX.test")
	if err != nil || len(mxs) != 1 || mxs[0].Host != "mx.inbox.test." {
		t.Fatalf("static MX = %v, %v; want mx.inbox.test.", mxs, err)
	}
	// The name has static records, so other types are NODATA even though
	// the server has an A record for it.
	addrs, err := r.LookupNetIP(ctx, "ip4", "inbox.test")
	if err != nil || len(addrs) != 0 {
		t.Fatalf("static name, other type = %v, %v; want NODATA", addrs, err)
	}
	addrs, err = r.LookupNetIP(ctx, "ip4", "mail.inbox.test")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("static CNAME = %v, %v; want 127.0.0.1", addrs, err)
	}
	if n := s.Queries(); n != 0 {
		t.Fatalf("server got %d queries for static names, want 0", n)
	}
	// A static CNAME may point to a name that only DNS knows.
	addrs, err = r.LookupNetIP(ctx, "ip4", "out.inbox.test")
	if err != nil || len(addrs) != 2 {
		t.Fatalf("static CNAME to DNS name = %v, %v; want the 2 addresses from DNS", addrs, err)
	}
	// Names without static records go to the server.
	if _, err := r.LookupMX(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	if n := s.Queries(); n != 2 {
		t.Errorf("server got %d queries, want 2", n)
	}
}

func TestBadStaticLine(t *testing.T) {
	_, err := New(Config{Nameservers: []string{"127.0.0.1:53"}, Static: []string{
		"ok.test. 300 IN A 127.0.0.1",
		"bad.test. 300 IN MX ten mx.bad.test.",
	}})
	if err == nil {
		t.Fatal("New accepted a bad static line")
	}
	if !strings.Contains(err.Error(), "static record 2") || !strings.Contains(err.Error(), "bad.test.") {
		t.Errorf("error %q does not name the line", err)
	}
}

func TestNameserverSyntax(t *testing.T) {
	r, err := New(Config{Nameservers: []string{"192.0.2.53", "[2001:db8::53]:5353", "127.0.0.1:1053"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.53:53", "[2001:db8::53]:5353", "127.0.0.1:1053"}
	if !slices.Equal(r.nameservers, want) {
		t.Errorf("nameservers = %v, want %v", r.nameservers, want)
	}
	if _, err := New(Config{Nameservers: []string{"dns.example:53"}}); err == nil {
		t.Error("a host name was accepted as a nameserver")
	}
}

func TestNameserversFromResolvConf(t *testing.T) {
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil || len(cc.Servers) == 0 {
		t.Skipf("no usable %s: %v", resolvConf, err)
	}
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.nameservers) != len(cc.Servers) || !strings.Contains(r.nameservers[0], cc.Servers[0]) {
		t.Errorf("nameservers = %v, want %v on port %s", r.nameservers, cc.Servers, cc.Port)
	}
}

func TestCacheHonoursTTL(t *testing.T) {
	s := dnstest.Start(t, zone)
	clk := newClock()
	r := newResolver(t, Config{Now: clk.Now}, s.Addr())
	ctx := context.Background()
	lookup := func() {
		t.Helper()
		if mxs, err := r.LookupMX(ctx, "example.test."); err != nil || len(mxs) != 4 {
			t.Fatalf("LookupMX = %v, %v", mxs, err)
		}
	}
	lookup()
	lookup()
	if n := s.Queries(); n != 1 {
		t.Fatalf("%d queries for 2 lookups, want 1 (cache hit)", n)
	}
	clk.Advance(299 * time.Second)
	lookup()
	if n := s.Queries(); n != 1 {
		t.Fatalf("%d queries before the TTL ran out, want 1", n)
	}
	clk.Advance(time.Second)
	lookup()
	if n := s.Queries(); n != 2 {
		t.Fatalf("%d queries after the TTL ran out, want 2", n)
	}
}

func TestCacheCapsTTL(t *testing.T) {
	s := dnstest.Start(t, "long.test. 604800 IN A 192.0.2.7")
	clk := newClock()
	r := newResolver(t, Config{Now: clk.Now}, s.Addr())
	for range 2 {
		if _, err := r.LookupNetIP(context.Background(), "ip4", "long.test"); err != nil {
			t.Fatal(err)
		}
		clk.Advance(maxTTL)
	}
	if n := s.Queries(); n != 2 {
		t.Fatalf("%d queries, want 2: a week-long TTL must be capped at %v", n, maxTTL)
	}
}

func TestQueryResultsAreCopies(t *testing.T) {
	s := dnstest.Start(t, zone)
	r := newResolver(t, Config{}, s.Addr())
	ctx := context.Background()
	rrs, err := r.Query(ctx, "host.example.test.", dns.TypeAAAA)
	if err != nil || len(rrs) != 1 {
		t.Fatalf("Query = %v, %v", rrs, err)
	}
	rrs[0].(*dns.AAAA).AAAA = net.ParseIP("2001:db8::bad")
	again, err := r.Query(ctx, "host.example.test.", dns.TypeAAAA)
	if err != nil || !again[0].(*dns.AAAA).AAAA.Equal(net.ParseIP("2001:db8::1")) {
		t.Fatalf("changing a result changed the cache: %v, %v", again, err)
	}
}

func TestNegativeCaching(t *testing.T) {
	s := dnstest.Start(t, zone)
	clk := newClock()
	r := newResolver(t, Config{Now: clk.Now}, s.Addr())
	ctx := context.Background()
	// The SOA has TTL 300 and MINIMUM 60: negative answers live 60 s.
	for _, name := range []string{"missing.example.test.", "host.example.test."} { // NXDOMAIN, NODATA
		before := s.Queries()
		for range 2 {
			_, err := r.LookupTXT(ctx, name)
			if name == "missing.example.test." && !dnsError(t, err).IsNotFound {
				t.Fatalf("%s: %v, want NXDOMAIN", name, err)
			}
		}
		if n := s.Queries() - before; n != 1 {
			t.Fatalf("%s: %d queries for 2 lookups, want 1", name, n)
		}
		clk.Advance(59 * time.Second)
		r.LookupTXT(ctx, name)
		if n := s.Queries() - before; n != 1 {
			t.Fatalf("%s: %d queries before the negative TTL ran out, want 1", name, n)
		}
		clk.Advance(time.Second)
		r.LookupTXT(ctx, name)
		if n := s.Queries() - before; n != 2 {
			t.Fatalf("%s: %d queries after the negative TTL ran out, want 2", name, n)
		}
	}
	// Without a SOA in the answer there is nothing to cache by (RFC 2308).
	before := s.Queries()
	r.LookupTXT(ctx, "nosoa.test.")
	r.LookupTXT(ctx, "nosoa.test.")
	if n := s.Queries() - before; n != 2 {
		t.Errorf("NODATA without SOA: %d queries for 2 lookups, want 2 (not cached)", n)
	}
}

func TestFailuresCachedBriefly(t *testing.T) {
	s := dnstest.Start(t, zone)
	s.Fail("broken.example.test.", dns.RcodeServerFailure)
	clk := newClock()
	r := newResolver(t, Config{Now: clk.Now, Attempts: 1}, s.Addr())
	ctx := context.Background()
	for range 2 {
		if _, err := r.LookupMX(ctx, "broken.example.test."); err == nil {
			t.Fatal("SERVFAIL gave no error")
		}
	}
	if n := s.Queries(); n != 1 {
		t.Fatalf("%d queries, want 1 (failure cached briefly)", n)
	}
	clk.Advance(failureTTL)
	r.LookupMX(ctx, "broken.example.test.")
	if n := s.Queries(); n != 2 {
		t.Fatalf("%d queries after %v, want 2 (failure no longer cached)", n, failureTTL)
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	s := dnstest.Start(t, zone)
	r := newResolver(t, Config{CacheSize: 2}, s.Addr())
	ctx := context.Background()
	lookup := func(name string) {
		t.Helper()
		if _, err := r.LookupNetIP(ctx, "ip4", name); err != nil {
			t.Fatal(err)
		}
	}
	lookup("host.example.test")  // 1 query
	lookup("nosoa.test")         // 2
	lookup("host.example.test")  // cached, now most recently used
	lookup("alias.example.test") // 3, evicts nosoa.test
	if got := r.cache.len(); got != 2 {
		t.Fatalf("cache holds %d answers, want 2", got)
	}
	lookup("host.example.test") // still cached
	if n := s.Queries(); n != 3 {
		t.Fatalf("%d queries, want 3: the recently used entry was evicted", n)
	}
	lookup("nosoa.test") // evicted: asks again
	if n := s.Queries(); n != 4 {
		t.Fatalf("%d queries, want 4: the least recently used entry was kept", n)
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	var big strings.Builder
	for i := range 40 {
		fmt.Fprintf(&big, "big.test. 300 IN TXT \"%s%02d\"\n", strings.Repeat("x", 98), i)
	}
	s := dnstest.Start(t, big.String())
	r := newResolver(t, Config{}, s.Addr())
	txts, err := r.LookupTXT(context.Background(), "big.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(txts) != 40 {
		t.Fatalf("%d TXT records, want all 40", len(txts))
	}
	if n := s.Queries(); n != 2 {
		t.Errorf("%d queries, want 2 (UDP truncated, then TCP)", n)
	}
}

func TestDroppedQueryTimesOut(t *testing.T) {
	s := dnstest.Start(t, zone)
	s.Drop("example.test.")
	r := newResolver(t, Config{Timeout: 100 * time.Millisecond, Attempts: 2}, s.Addr())
	_, err := r.LookupMX(context.Background(), "example.test.")
	if de := dnsError(t, err); !de.IsTimeout || !de.IsTemporary || de.IsNotFound {
		t.Fatalf("dropped query: %+v, want IsTimeout and IsTemporary", de)
	}
}

func TestContextEndsTheWait(t *testing.T) {
	s := dnstest.Start(t, zone)
	s.Drop("example.test.")
	// A long query timeout: only the context can end these lookups soon.
	r := newResolver(t, Config{Timeout: time.Minute}, s.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := r.LookupMX(ctx, "example.test.")
	if de := dnsError(t, err); !de.IsTimeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %+v, want IsTimeout wrapping context.DeadlineExceeded", de)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = r.LookupMX(ctx, "example.test.")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v, want context.Canceled", err)
	}
}

func TestNextNameserverOnFailure(t *testing.T) {
	bad := dnstest.Start(t, zone)
	bad.Fail("example.test.", dns.RcodeRefused)
	good := dnstest.Start(t, zone)
	r := newResolver(t, Config{Attempts: 1}, bad.Addr(), good.Addr())
	mxs, err := r.LookupMX(context.Background(), "example.test.")
	if err != nil || len(mxs) != 4 {
		t.Fatalf("LookupMX = %v, %v; want the answer of the second server", mxs, err)
	}
	if bad.Queries() != 1 || good.Queries() != 1 {
		t.Errorf("queries: first %d, second %d; want 1 each, in order", bad.Queries(), good.Queries())
	}
}

func TestNXDOMAINEndsTheSearch(t *testing.T) {
	first := dnstest.Start(t, zone)
	second := dnstest.Start(t, zone)
	r := newResolver(t, Config{}, first.Addr(), second.Addr())
	if _, err := r.LookupMX(context.Background(), "missing.example.test."); !dnsError(t, err).IsNotFound {
		t.Fatalf("err = %v, want NXDOMAIN", err)
	}
	if first.Queries() != 1 || second.Queries() != 0 {
		t.Errorf("queries: first %d, second %d; NXDOMAIN is an answer, not a failure", first.Queries(), second.Queries())
	}
}

// A reconfigured resolver answers from its own static records and
// nameservers, and shares the cache of the one it came from: what was
// cached before a reload is not asked again.
func TestReconfiguredSharesTheCache(t *testing.T) {
	s := dnstest.Start(t, zone)
	ctx := context.Background()
	old := newResolver(t, Config{Static: []string{"inbox.test. 300 IN MX 10 old.inbox.test."}}, s.Addr())
	if _, err := old.LookupMX(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	cur, err := old.Reconfigured(Config{Nameservers: []string{s.Addr()},
		Static: []string{"inbox.test. 300 IN MX 10 new.inbox.test."}})
	if err != nil {
		t.Fatal(err)
	}
	if mxs, err := cur.LookupMX(ctx, "inbox.test"); err != nil || len(mxs) != 1 || mxs[0].Host != "new.inbox.test." {
		t.Errorf("reconfigured static MX = %v, %v; want new.inbox.test.", mxs, err)
	}
	if mxs, err := old.LookupMX(ctx, "inbox.test"); err != nil || len(mxs) != 1 || mxs[0].Host != "old.inbox.test." {
		t.Errorf("the old resolver's static MX = %v, %v; want old.inbox.test. still", mxs, err)
	}
	if _, err := cur.LookupMX(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	if n := s.Queries(); n != 1 {
		t.Errorf("server got %d queries, want 1: the answer cached before reconfiguring should serve", n)
	}
	if _, err := old.Reconfigured(Config{Static: []string{"not a record"}, Nameservers: []string{s.Addr()}}); err == nil {
		t.Error("a bad static line reconfigured without an error")
	}
}
