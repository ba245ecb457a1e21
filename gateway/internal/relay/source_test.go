package relay

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

// sentFrom is the address a delivery's connection came from.
func sentFrom(t *testing.T, d delivery) string {
	t.Helper()
	host, _, err := net.SplitHostPort(d.remote)
	if err != nil {
		t.Fatal(err)
	}
	return host
}

func TestSourcesTakeTurnsWithTheirHeloPerNewConnection(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"), func(c *Config) {
		c.MaxIdle = -1 // every transaction on a new connection
		c.Sources = []Source{
			{Addr: netip.MustParseAddr("127.0.0.3"), Helo: "out1.sluice.test"},
			{Addr: netip.MustParseAddr("::1"), Helo: "six.sluice.test"}, // another family: never for 127.0.0.2
			{Addr: netip.MustParseAddr("127.0.0.4")},                    // Config.Helo
		}
	})
	for range 4 {
		send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	}
	got := d.deliveries()
	want := [][2]string{{"127.0.0.3", "out1.sluice.test"}, {"127.0.0.4", "sluice.test"}, {"127.0.0.3", "out1.sluice.test"}, {"127.0.0.4", "sluice.test"}}
	if len(got) != len(want) {
		t.Fatalf("%d deliveries, want %d", len(got), len(want))
	}
	for i, w := range want {
		if from := sentFrom(t, got[i]); from != w[0] || got[i].helo != w[1] {
			t.Errorf("delivery %d came from %s saying EHLO %s; want %s with %s", i, from, got[i].helo, w[0], w[1])
		}
	}
}

func TestSourceOfTheDestinationsFamily(t *testing.T) {
	requireIPv6(t)
	port, lns := listenSamePort(t, "::1", "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	sources := []Source{
		{Addr: netip.MustParseAddr("127.0.0.3"), Helo: "four.sluice.test"},
		{Addr: netip.MustParseAddr("::1"), Helo: "six.sluice.test"},
	}
	for _, tc := range []struct{ mx, from, helo string }{
		{"::1", "::1", "six.sluice.test"},
		{"127.0.0.2", "127.0.0.3", "four.sluice.test"},
	} {
		r := newTestRelay(t, port, oneMX(t, tc.mx), func(c *Config) { c.Sources = sources })
		send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
		got := d.deliveries()
		if last := got[len(got)-1]; sentFrom(t, last) != tc.from || last.helo != tc.helo {
			t.Errorf("to %s: came from %s saying EHLO %s; want %s with %s", tc.mx, sentFrom(t, last), last.helo, tc.from, tc.helo)
		}
	}
}

func TestNoSourceOfTheFamilyLeavesItToTheKernel(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"), func(c *Config) {
		c.Sources = []Source{{Addr: netip.MustParseAddr("::1"), Helo: "six.sluice.test"}}
	})
	send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	if got := d.deliveries()[0]; got.helo != "sluice.test" {
		t.Errorf("EHLO %s, want Config.Helo, sluice.test", got.helo)
	}
}

func TestPooledConnectionKeepsItsSource(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.server.TLSConfig = selfSignedTLS(t, "mx.example.test")
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"), func(c *Config) {
		c.Sources = []Source{
			{Addr: netip.MustParseAddr("127.0.0.3"), Helo: "out1.sluice.test"},
			{Addr: netip.MustParseAddr("127.0.0.4"), Helo: "out2.sluice.test"},
		}
	})
	for range 3 {
		send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	}
	if n := d.acceptedConns(); n != 1 {
		t.Fatalf("%d connections, want the first one reused", n)
	}
	for i, got := range d.deliveries() {
		// The EHLO name is the one said after STARTTLS, on a new session.
		if from := sentFrom(t, got); from != "127.0.0.3" || got.helo != "out1.sluice.test" || !got.tls {
			t.Errorf("delivery %d came from %s saying EHLO %s (TLS %v); want 127.0.0.3 with out1.sluice.test over TLS", i, from, got.helo, got.tls)
		}
	}
}

func TestCheckLocal(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "127.0.0.3"} {
		if err := CheckLocal(netip.MustParseAddr(ip)); err != nil {
			t.Errorf("CheckLocal(%s) = %v, want nil", ip, err)
		}
	}
	// 192.0.2.0/24 is TEST-NET-1 (RFC 5737), never a machine's address.
	err := CheckLocal(netip.MustParseAddr("192.0.2.1"))
	if want := "192.0.2.1 is not an address of this machine: bind: cannot assign requested address"; fmt.Sprint(err) != want {
		t.Errorf("CheckLocal(192.0.2.1) = %v, want %s", err, want)
	}
}
