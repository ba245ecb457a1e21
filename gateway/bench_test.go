package gateway_test

import (
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// demoChain returns the [[plugin]] tables and [scoring] of the demo's
// gateway.toml, the chain a small domain would use, with each plugin built
// from source. The ratelimit's 100 messages an hour per client becomes a
// limit that no benchmark reaches: it still counts every message.
func demoChain(tb testing.TB) string {
	tb.Helper()
	src, err := os.ReadFile("../gateway.toml")
	if err != nil {
		tb.Fatal(err)
	}
	s := string(src)
	start, end := strings.Index(s, "\n[[plugin]]\n"), strings.Index(s, "\n[auth]\n")
	if start < 0 || end < start {
		tb.Fatal("gateway.toml no longer has its [[plugin]] tables before [auth]; update demoChain")
	}
	chain := s[start:end]
	if strings.Count(chain, "\nmax = 100\n") != 1 {
		tb.Fatal("gateway.toml's ratelimit no longer has max = 100; update demoChain")
	}
	chain = strings.Replace(chain, "\nmax = 100\n", "\nmax = 1000000000\n", 1)
	path := regexp.MustCompile(`path = "plugins/([a-z]+)/[a-z]+\.wasm"`)
	return path.ReplaceAllStringFunc(chain, func(p string) string {
		return fmt.Sprintf("path = %q", wasmbuild.ForTest(tb, "./plugins/"+path.FindStringSubmatch(p)[1]))
	})
}

// demoRouter is the demo's router table alone.
func demoRouter(tb testing.TB, chain string) string {
	tb.Helper()
	for _, table := range strings.Split(chain, "\n[[plugin]]\n") {
		if strings.HasPrefix(table, "name = \"router\"\n") {
			return "\n[[plugin]]\n" + table
		}
	}
	tb.Fatal("the demo's chain has no router")
	return ""
}

// demoZone answers what the demo's static DNS records answer: the inbox's
// MX (here the test destination), the sender's SPF and DMARC records, the
// client's confirmed name (also its HELO), and the blocklist's "not
// listed" for 127.0.0.1.
const demoZone = `
inbox.test.              300 IN MX  10 mx.dest.test.
example.org.             300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.example.org.      300 IN TXT "v=DMARC1; p=none"
client.example.org.      300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
client.example.org.      300 IN A   127.0.0.1
1.0.0.127.in-addr.arpa.  300 IN PTR client.example.org.
1.0.0.127.dnsbl.test.    300 IN TXT "not listed"
`

// benchMessage is a 4 KiB message as `sluice send` would make it, with a
// text body.
var benchMessage = "From: Alice <alice@example.org>\r\nTo: <info@your-domain.test>\r\nSubject: The minutes of Tuesday's meeting\r\n" +
	"Date: Thu, 13 Mar 2025 10:00:00 +0000\r\nMessage-ID: <bench.1@example.org>\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n\r\n" +
	strings.Repeat("The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n", 53)

// BenchmarkDemoChain is one message through a whole SMTP session (connect,
// EHLO, MAIL, RCPT, DATA of 4 KiB, QUIT), relayed in session to a
// destination on loopback, by two gateways side by side, a session to each
// in every iteration so that both see the same machine:
//
//   - forward: the demo's router alone, no authentication checks;
//   - chain: the demo's whole chain (dnsbl, ratelimit, router, spam,
//     dmarc, and [scoring]) with the SPF, DKIM, ARC and DMARC checks the
//     spam and dmarc plugins read.
//
// Neither signs: DKIM signing and the ARC seal cost the same whatever the
// chain (BenchmarkSign in gateway/internal/dkim; bench/load.sh's full
// profile has them). DNS answers come from the resolver's cache after the
// first message, as they mostly do for a real MX. The metrics are each
// gateway's time per message and their ratio; the client and the
// destination run in this process, so the difference is what the chain
// costs. ns/op is the two sessions together.
func BenchmarkDemoChain(b *testing.B) {
	chain := demoChain(b)
	quiet := new(slog.LevelVar) // info: a line per message, as in production
	start := func(plugins, auth string) *env {
		e := startEnv(b, envOptions{domains: `["your-domain.test"]`, unsigned: true, auth: auth, plugins: plugins, level: quiet})
		e.addRecords(b, demoZone)
		return e
	}
	forward := start(demoRouter(b, chain), "enabled = false")
	full := start(chain, "")

	send := func(e *env) time.Duration { return sendBenchMessage(b, e) }
	// Once each before timing: the plugins' instances start, the DNS
	// answers are cached, and the chain must not refuse or score the
	// message (it would measure less than a delivery).
	send(forward)
	send(full)
	if got := full.dest.deliveries(); len(got) != 1 || !strings.Contains(string(got[0].data), "X-Spam-Flag: NO") {
		b.Fatalf("the demo chain did not forward the message unflagged: %d deliveries\n%s", len(got), full.logs.String())
	}
	for _, stage := range []string{"dnsbl@rcpt:continue", "ratelimit@mail:continue", "router@rcpt:continue", "spam@data:continue", "dmarc@data:continue"} {
		if !strings.Contains(full.logs.String(), stage) {
			b.Fatalf("the demo chain's log line lacks %s:\n%s", stage, full.logs.String())
		}
	}

	var fwd, chn time.Duration
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	for b.Loop() {
		fwd += send(forward)
		chn += send(full)
	}
	n := float64(b.N)
	b.ReportMetric(float64(fwd.Microseconds())/n, "forward-µs/msg")
	b.ReportMetric(float64(chn.Microseconds())/n, "chain-µs/msg")
	b.ReportMetric(float64(chn)/float64(fwd), "chain/forward")
}

// sendBenchMessage sends benchMessage to info@your-domain.test in a
// session of its own, as a sending MTA does, and returns how long it took.
func sendBenchMessage(b *testing.B, e *env) time.Duration {
	t0 := time.Now()
	c, err := smtp.Dial(e.addr)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Hello("client.example.org"); err != nil {
		b.Fatal(err)
	}
	if err := c.SendMail("alice@example.org", []string{"info@your-domain.test"}, strings.NewReader(benchMessage)); err != nil {
		b.Fatal(err)
	}
	c.Quit()
	return time.Since(t0)
}

// BenchmarkActivity is forwarding (the demo's router alone, as in
// BenchmarkDemoChain's forward) with the console's recording off and on,
// by two gateways started side by side: off and on time each alone, and
// interleaved sends one session to each in every iteration, so that both
// see the same machine, and reports the ratio (issue 13 asks for on
// within 5% of off). Records are written in batches by the store's own
// goroutine, which this measures too: it shares the machine.
func BenchmarkActivity(b *testing.B) {
	router := demoRouter(b, demoChain(b))
	quiet := new(slog.LevelVar)
	start := func(sections string) *env {
		e := startEnv(b, envOptions{domains: `["your-domain.test"]`, unsigned: true, auth: "enabled = false",
			plugins: router, level: quiet, sections: sections})
		e.addRecords(b, demoZone)
		return e
	}
	off, on := start(""), start(consoleSections(""))
	if on.gw.Activity() == nil || off.gw.Activity() != nil {
		b.Fatal("the console is not on in one gateway and off in the other")
	}
	send := func(e *env) time.Duration { return sendBenchMessage(b, e) }
	send(off)
	send(on)
	alone := func(e *env) func(*testing.B) {
		return func(b *testing.B) {
			b.SetBytes(int64(len(benchMessage)))
			b.ReportAllocs()
			for b.Loop() {
				send(e)
			}
		}
	}
	b.Run("off", alone(off))
	b.Run("on", alone(on))
	b.Run("interleaved", func(b *testing.B) {
		var tOff, tOn time.Duration
		for b.Loop() {
			tOff += send(off)
			tOn += send(on)
		}
		n := float64(b.N)
		b.ReportMetric(float64(tOff.Microseconds())/n, "off-µs/msg")
		b.ReportMetric(float64(tOn.Microseconds())/n, "on-µs/msg")
		b.ReportMetric(float64(tOn)/float64(tOff), "on/off")
	})
	if c := on.gw.Activity().Counts(); c.DroppedError > 0 {
		b.Errorf("records dropped by the database: %+v", c)
	}
}
