package gateway_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// The client's forward-confirmed reverse DNS name reaches the plugins with
// its result, and a verified name goes into our Received field; each
// loopback address the client connects from has its own reverse zone.
func TestClientNameGivenToPlugins(t *testing.T) {
	e := startEnv(t, envOptions{plugins: clientNamePlugins(t)})
	e.addRecords(t, `
1.0.0.127.in-addr.arpa.  300 IN PTR Client.Example.ORG.
client.example.org.      300 IN A   127.0.0.1
2.0.0.127.in-addr.arpa.  300 IN PTR liar.example.org.
liar.example.org.        300 IN A   192.0.2.1
`)
	e.dns.Fail("4.0.0.127.in-addr.arpa.", dns.RcodeServerFailure)

	for _, tc := range []struct {
		from, header, received string
	}{
		{"127.0.0.1", "X-Client: [client.example.org] pass", "from sender.example.org (client.example.org [127.0.0.1])"},
		{"127.0.0.2", "X-Client: [] fail", "from sender.example.org ([127.0.0.2])"},
		{"127.0.0.3", "X-Client: [] none", "from sender.example.org ([127.0.0.3])"},
		{"127.0.0.4", "X-Client: [] temperror", "from sender.example.org ([127.0.0.4])"},
	} {
		before := len(e.dest.deliveries())
		if err := sendMail(t, dialFrom(t, e.addr, tc.from), "alice@example.org", "info@ours.test", testMessage); err != nil {
			t.Fatal(err)
		}
		got := e.dest.deliveries()
		if len(got) != before+1 {
			t.Fatalf("from %s: %d deliveries, want %d", tc.from, len(got), before+1)
		}
		data := string(got[before].data)
		if !strings.Contains(data, tc.header+"\r\n") {
			t.Errorf("from %s: no %q in\n%s", tc.from, tc.header, data)
		}
		unfolded := strings.ReplaceAll(data, "\r\n\t", " ")
		if !strings.Contains(unfolded, "Received: "+tc.received+" by mx.ours.test") {
			t.Errorf("from %s: no Received field %q in\n%s", tc.from, tc.received, data)
		}
	}
}

// clientNamePlugins are a plugin that adds the client's name and its
// result as a header field, X-Client: [name] result, and the router.
func clientNamePlugins(t *testing.T) string {
	return fmt.Sprintf(`
[[plugin]]
name = "whoami"
path = %q
stages = ["mail"]
[plugin.config]
permit = ["add_headers"]
header = "X-Client: [{client_name}] {client_name_result}"
%s
`, wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"), routerPlugin(t))
}

// dialFrom opens an SMTP session to addr from the loopback address from.
func dialFrom(t *testing.T, addr, from string) *smtp.Client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("sender.example.org"); err != nil {
		t.Fatal(err)
	}
	return c
}

// A client whose reverse zone never answers waits client_name_timeout for
// its first plugin, not every retry of every query: with a 20-second DNS
// timeout, the name is a temperror after 200ms and the session goes on.
func TestClientNameLookupIsBounded(t *testing.T) {
	e := startEnv(t, envOptions{dns: "timeout = \"20s\"\nclient_name_timeout = \"200ms\"", plugins: clientNamePlugins(t)})
	e.dns.Drop("5.0.0.127.in-addr.arpa.")

	c := dialFrom(t, e.addr, "127.0.0.5")
	// Without the bound, MAIL would wait for the PTR query's 20-second
	// attempts; the deadline fails the test long before they end.
	c.CommandTimeout = 10 * time.Second
	if err := sendMail(t, c, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || !strings.Contains(string(got[0].data), "X-Client: [] temperror\r\n") {
		t.Errorf("deliveries %d; want one with X-Client: [] temperror", len(got))
	}
}
