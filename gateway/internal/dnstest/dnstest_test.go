package dnstest

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const testZone = `
$TTL 300
$ORIGIN example.test.
@        IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60
@        IN MX  10 mx
mx       IN A   192.0.2.25
mx       IN AAAA 2001:db8::25
www      IN CNAME mx
loop1    IN CNAME loop2
loop2    IN CNAME loop1
a.b.deep IN TXT "deep"
other.test. 60 IN TXT "no soa here"
`

// exchange sends one query to s over network ("udp" or "tcp").
func exchange(t *testing.T, s *Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

func TestAnswersOverUDPAndTCP(t *testing.T) {
	s := Start(t, testZone)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:PORT", s.Addr())
	}
	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, s, network, "EXAMPLE.test.", dns.TypeMX)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s MX: rcode %d, answer %v", network, r.Rcode, r.Answer)
		}
		mx, ok := r.Answer[0].(*dns.MX)
		if !ok || mx.Mx != "mx.example.test." || mx.Preference != 10 || mx.Hdr.Ttl != 300 {
			t.Fatalf("%s MX: got %v", network, r.Answer[0])
		}
		if !r.Authoritative {
			t.Errorf("%s: answer not authoritative", network)
		}
	}
	if got := s.Queries(); got != 2 {
		t.Errorf("Queries() = %d, want 2", got)
	}
}

func TestNXDOMAINCarriesSOA(t *testing.T) {
	s := Start(t, testZone)
	r := exchange(t, s, "udp", "missing.example.test.", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
		t.Fatalf("rcode %s, answer %v; want NXDOMAIN, empty", dns.RcodeToString[r.Rcode], r.Answer)
	}
	if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA || r.Ns[0].Header().Name != "example.test." {
		t.Fatalf("authority = %v, want the example.test. SOA", r.Ns)
	}
}

func TestNODATA(t *testing.T) {
	s := Start(t, testZone)
	for _, name := range []string{"mx.example.test.", "deep.example.test."} { // data of other types; empty non-terminal
		r := exchange(t, s, "udp", name, dns.TypeTXT)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Fatalf("%s: rcode %s, answer %v; want NOERROR, empty", name, dns.RcodeToString[r.Rcode], r.Answer)
		}
		if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
			t.Errorf("%s: authority = %v, want the SOA", name, r.Ns)
		}
	}
}

func TestNoSOAOutsideZones(t *testing.T) {
	s := Start(t, testZone)
	r := exchange(t, s, "udp", "nothing.other.test.", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 0 {
		t.Fatalf("rcode %s, authority %v; want NXDOMAIN without SOA", dns.RcodeToString[r.Rcode], r.Ns)
	}
}

func TestFollowsCNAME(t *testing.T) {
	s := Start(t, testZone)
	r := exchange(t, s, "udp", "www.example.test.", dns.TypeAAAA)
	if len(r.Answer) != 2 {
		t.Fatalf("answer %v, want CNAME then AAAA", r.Answer)
	}
	if c, ok := r.Answer[0].(*dns.CNAME); !ok || c.Target != "mx.example.test." {
		t.Errorf("first answer %v, want CNAME to mx.example.test.", r.Answer[0])
	}
	if a, ok := r.Answer[1].(*dns.AAAA); !ok || !a.AAAA.Equal(net.ParseIP("2001:db8::25")) {
		t.Errorf("second answer %v, want AAAA 2001:db8::25", r.Answer[1])
	}
	// Asking for the CNAME itself returns it without following.
	r = exchange(t, s, "udp", "www.example.test.", dns.TypeCNAME)
	if len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Errorf("CNAME query: answer %v", r.Answer)
	}
	r = exchange(t, s, "udp", "loop1.example.test.", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("CNAME loop: rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

func TestFail(t *testing.T) {
	s := Start(t, testZone)
	s.Fail("Example.Test", dns.RcodeServerFailure)
	r := exchange(t, s, "udp", "example.test.", dns.TypeMX)
	if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Fatalf("rcode %s, answer %v; want SERVFAIL", dns.RcodeToString[r.Rcode], r.Answer)
	}
	if r := exchange(t, s, "udp", "mx.example.test.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Errorf("other name: rcode %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
}

func TestDrop(t *testing.T) {
	s := Start(t, testZone)
	s.Drop("mx.example.test.")
	for _, network := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion("mx.example.test.", dns.TypeA)
		c := &dns.Client{Net: network, Timeout: 200 * time.Millisecond}
		_, _, err := c.Exchange(m, s.Addr())
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s: err = %v, want a timeout", network, err)
		}
	}
	if got := s.Queries(); got != 0 {
		t.Errorf("Queries() = %d after dropped queries, want 0", got)
	}
}

func TestSetRecords(t *testing.T) {
	s := Start(t, testZone)
	if err := s.SetRecords("mx.example.test. 60 IN A 192.0.2.99"); err != nil {
		t.Fatal(err)
	}
	r := exchange(t, s, "udp", "mx.example.test.", dns.TypeA)
	if len(r.Answer) != 1 || !r.Answer[0].(*dns.A).A.Equal(net.ParseIP("192.0.2.99")) {
		t.Fatalf("answer %v, want the new record", r.Answer)
	}
	if err := s.SetRecords("bad.test. IN A not-an-ip"); err == nil {
		t.Fatal("SetRecords accepted a bad line")
	}
	r = exchange(t, s, "udp", "mx.example.test.", dns.TypeA)
	if len(r.Answer) != 1 {
		t.Fatalf("a failed SetRecords changed the data: %v", r.Answer)
	}
}

func TestTruncatesBigUDPAnswers(t *testing.T) {
	var zone strings.Builder
	for i := range 40 {
		zone.WriteString("big.test. 300 IN TXT \"" + strings.Repeat("x", 90) + string(rune('a'+i%26)) + "\"\n")
	}
	s := Start(t, zone.String())
	m := new(dns.Msg)
	m.SetQuestion("big.test.", dns.TypeTXT)
	m.SetEdns0(1232, false)
	udp := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := udp.Exchange(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) >= 40 {
		t.Fatalf("UDP: truncated=%v with %d records, want TC set and fewer than 40", r.Truncated, len(r.Answer))
	}
	if r.IsEdns0() == nil {
		t.Error("UDP: EDNS0 not echoed")
	}
	tcp := exchange(t, s, "tcp", "big.test.", dns.TypeTXT)
	if tcp.Truncated || len(tcp.Answer) != 40 {
		t.Fatalf("TCP: truncated=%v with %d records, want all 40", tcp.Truncated, len(tcp.Answer))
	}
}

func TestAuthenticateSetsADWhenAsked(t *testing.T) {
	s := Start(t, testZone+`
_25._tcp.mx.example.test. IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
out.example.test. IN CNAME other.test.
`)
	s.Authenticate("example.test.")
	s.Fail("broken.example.test.", dns.RcodeServerFailure)
	ask := func(name string, qtype uint16, ad, do bool) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.AuthenticatedData = ad
		m.SetEdns0(1232, do)
		r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cases := []struct {
		name   string
		qtype  uint16
		ad, do bool
		wantAD bool
	}{
		{"mx.example.test.", dns.TypeA, true, false, true},
		{"mx.example.test.", dns.TypeA, false, true, true},   // DO asks too
		{"mx.example.test.", dns.TypeA, false, false, false}, // not asked
		{"nothing.example.test.", dns.TypeA, true, false, true},
		{"www.example.test.", dns.TypeA, true, false, true},    // CNAME inside the zone
		{"out.example.test.", dns.TypeTXT, true, false, false}, // CNAME out of it
		{"other.test.", dns.TypeTXT, true, false, false},
		{"broken.example.test.", dns.TypeA, true, false, false},
	}
	for _, c := range cases {
		if r := ask(c.name, c.qtype, c.ad, c.do); r.AuthenticatedData != c.wantAD {
			t.Errorf("%s %s (AD %v, DO %v): AD = %v, want %v", c.name, dns.TypeToString[c.qtype], c.ad, c.do,
				r.AuthenticatedData, c.wantAD)
		}
	}
	r := ask("_25._tcp.mx.example.test.", dns.TypeTLSA, true, false)
	if len(r.Answer) != 1 || !r.AuthenticatedData {
		t.Fatalf("TLSA: answer %v, AD %v", r.Answer, r.AuthenticatedData)
	}
	if tlsa, ok := r.Answer[0].(*dns.TLSA); !ok || tlsa.Usage != 3 || tlsa.Selector != 1 || tlsa.MatchingType != 1 {
		t.Errorf("TLSA: got %v", r.Answer[0])
	}
}
