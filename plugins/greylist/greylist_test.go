package main

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// clock is a settable time, for the store's TTLs and the plugin.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time      { return c.now }
func (c *clock) add(d time.Duration) { c.now = c.now.Add(d) }

// newPlugin configures the plugin natively, its store and its clock on clk.
func newPlugin(t *testing.T, config string, clk *clock, opts ...sdktest.Option) *sdktest.Plugin {
	t.Helper()
	p := &plugin{}
	sp := sdktest.New(t, p, config, append(opts, sdktest.Clock(clk.Now))...)
	p.greylist.now = clk.Now
	return sp
}

// reply is a verdict in a reply's words: "continue", or "451 4.7.1 text".
func reply(v sdk.Verdict) string {
	if v.Failure != "" {
		return "failure: " + v.Failure
	}
	if v.Action == abi.Continue {
		return "continue"
	}
	return strconv.Itoa(int(v.Code)) + " " + v.Enhanced + " " + v.Text
}

func rcpt(ip, from, to string) *sdk.Request {
	return &sdk.Request{Stage: abi.StageRcpt, SessionID: "s", ClientIP: ip, MailFrom: from, Rcpt: to}
}

func expect(t *testing.T, p *sdktest.Plugin, req *sdk.Request, want string) {
	t.Helper()
	if got := reply(p.Handle(t, req)); got != want {
		t.Errorf("%s from %s <%s> to %s%v: %q, want %q", req.Stage, req.ClientIP, req.MailFrom, req.Rcpt, req.Rcpts, got, want)
	}
}

func TestTriplet(t *testing.T) {
	clk := &clock{time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newPlugin(t, `
delay = "5m"
retry_window = "1h"
auto_allowlist = false
`, clk)
	first := rcpt("192.0.2.10", "alice@example.org", "info@your-domain.test")
	expect(t, p, first, "451 4.7.1 Greylisted, try again in 300 seconds")
	clk.add(100 * time.Second)
	expect(t, p, first, "451 4.7.1 Greylisted, try again in 200 seconds") // too early
	// Another address of the client's /24 is the same client.
	clk.add(199*time.Second + 500*time.Millisecond)
	expect(t, p, rcpt("192.0.2.99", "Alice@Example.org", "INFO@your-domain.test"), "451 4.7.1 Greylisted, try again in 1 seconds")
	// Each part of the triplet counts: these are new.
	expect(t, p, rcpt("192.0.3.10", "alice@example.org", "info@your-domain.test"), "451 4.7.1 Greylisted, try again in 300 seconds")
	expect(t, p, rcpt("192.0.2.10", "bob@example.org", "info@your-domain.test"), "451 4.7.1 Greylisted, try again in 300 seconds")
	expect(t, p, rcpt("192.0.2.10", "alice@example.org", "sales@your-domain.test"), "451 4.7.1 Greylisted, try again in 300 seconds")
	clk.add(time.Second)
	expect(t, p, first, "continue") // the retry after the delay passes
	expect(t, p, first, "continue") // and so do later ones, until the expiry
	clk.add(30 * 24 * time.Hour)
	expect(t, p, first, "continue")
	// Without auto_allowlist the network's other triplets still wait.
	expect(t, p, rcpt("192.0.2.10", "carol@example.org", "info@your-domain.test"), "451 4.7.1 Greylisted, try again in 300 seconds")

	// A retry after the window is a first attempt again.
	late := rcpt("198.51.100.1", "", "info@your-domain.test") // the null sender too
	expect(t, p, late, "451 4.7.1 Greylisted, try again in 300 seconds")
	clk.add(5*time.Minute + time.Hour)
	expect(t, p, late, "451 4.7.1 Greylisted, try again in 300 seconds")
	clk.add(5 * time.Minute)
	expect(t, p, late, "continue")
	// What passed is forgotten after the expiry (35 days by default).
	clk.add(35 * 24 * time.Hour)
	expect(t, p, late, "451 4.7.1 Greylisted, try again in 300 seconds")
}

func TestAutoAllowlistAndIPv6(t *testing.T) {
	clk := &clock{time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newPlugin(t, `delay = "1m"`, clk)
	first := rcpt("2001:db8:1:2::25", "alice@example.org", "info@your-domain.test")
	expect(t, p, first, "451 4.7.1 Greylisted, try again in 60 seconds")
	clk.add(time.Minute)
	expect(t, p, rcpt("2001:db8:1:2:ffff::1", "alice@example.org", "info@your-domain.test"), "continue") // same /64
	// After one success the client's network passes, whatever the triplet.
	expect(t, p, rcpt("2001:db8:1:2::26", "zed@example.net", "sales@your-domain.test"), "continue")
	expect(t, p, rcpt("2001:db8:1:3::25", "zed@example.net", "sales@your-domain.test"), "451 4.7.1 Greylisted, try again in 60 seconds")
	// The allowlist entry is renewed by use: it lasts 35 days from the last.
	clk.add(30 * 24 * time.Hour)
	expect(t, p, rcpt("2001:db8:1:2::26", "new@example.net", "info@your-domain.test"), "continue")
	clk.add(30 * 24 * time.Hour)
	expect(t, p, rcpt("2001:db8:1:2::26", "new2@example.net", "info@your-domain.test"), "continue")
}

func TestSkips(t *testing.T) {
	clk := &clock{time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newPlugin(t, `
allow_networks = ["203.0.113.0/24"]
allow_client_names = [".google.com", "mx.example.net"]
`, clk)
	req := rcpt("192.0.2.10", "alice@gmail.com", "info@your-domain.test")
	req.ClientName, req.ClientNameResult = "mail-ej1-f41.google.com", "pass"
	expect(t, p, req, "continue")
	req.ClientName = "MX.example.net."
	expect(t, p, req, "continue")
	// Only a forward-confirmed name counts, and only under the suffix.
	req.ClientName, req.ClientNameResult = "mail-ej1-f41.google.com", "fail"
	expect(t, p, req, "451 4.7.1 Greylisted, try again in 300 seconds")
	req.ClientName, req.ClientNameResult = "evilgoogle.com", "pass"
	expect(t, p, req, "451 4.7.1 Greylisted, try again in 300 seconds")
	expect(t, p, rcpt("203.0.113.7", "a@example.org", "info@your-domain.test"), "continue")
	// At rcpt the plugin decides nothing at data.
	expect(t, p, &sdk.Request{Stage: abi.StageData, ClientIP: "192.0.2.200", Rcpts: []string{"x@your-domain.test"}}, "continue")
}

// data is a data-stage request from a client of 192.0.2.0/24.
func data(from string, rcpts ...string) *sdk.Request {
	return &sdk.Request{Stage: abi.StageData, SessionID: "s", ClientIP: "192.0.2.10", MailFrom: from, Rcpts: rcpts}
}

// At data, senders that SPF or DKIM passed for an allowed domain skip the
// greylist, and a message waits for the last of its recipients.
func TestStageData(t *testing.T) {
	clk := &clock{time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newPlugin(t, `
stage = "data"
delay = "2m"
allow_domains = ["example.com"]
auto_allowlist = false
`, clk)
	expect(t, p, rcpt("192.0.2.10", "alice@example.org", "info@your-domain.test"), "continue") // nothing at rcpt
	msg := data("alice@example.org", "info@your-domain.test")
	expect(t, p, msg, "451 4.7.1 Greylisted, try again in 120 seconds")
	clk.add(time.Minute)
	two := data("alice@example.org", "info@your-domain.test", "sales@your-domain.test")
	expect(t, p, two, "451 4.7.1 Greylisted, try again in 120 seconds") // sales is new
	clk.add(time.Minute)
	expect(t, p, two, "451 4.7.1 Greylisted, try again in 60 seconds") // info passed, sales waits
	clk.add(time.Minute)
	expect(t, p, two, "continue")

	spf := data("bob@news.example.com", "info@your-domain.test")
	spf.Auth.SPF = abi.SPF{Result: "pass", Domain: "news.example.com"}
	expect(t, p, spf, "continue")
	dkim := data("carol@example.net", "info@your-domain.test")
	dkim.Auth.DKIM = []abi.DKIM{{Result: "fail", Domain: "example.net"}, {Result: "pass", Domain: "example.com"}}
	expect(t, p, dkim, "continue")
	dkim.Auth.DKIM = []abi.DKIM{{Result: "fail", Domain: "example.com"}}
	dkim.Auth.SPF = abi.SPF{Result: "softfail", Domain: "example.com"}
	expect(t, p, dkim, "451 4.7.1 Greylisted, try again in 120 seconds")
}

func TestStoreFailure(t *testing.T) {
	clk := &clock{time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newPlugin(t, "", clk, sdktest.Deny(abi.CapKV))
	v, err := p.Try(rcpt("192.0.2.10", "a@example.org", "info@your-domain.test"))
	if err != nil || !strings.HasPrefix(v.Failure, "greylist store: ") || v.Action != abi.Tempfail || v.Code != 451 {
		t.Errorf("with the store denied: %+v, %v; want a failure", v, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ config, key, text string }{
		{`delay = "0s"`, "delay", "must be more than 0"},
		{`delay = "500ms"`, "delay", "want 1s to 366d"},
		{`expiry = "400d"`, "expiry", "want 1s to 366d"},
		{"delay = \"300d\"\nretry_window = \"100d\"", "retry_window", "at most 366d"},
		{`stage = "mail"`, "stage", `stage "mail"`},
		{`ipv4_prefix = 33`, "ipv4_prefix", "want 8 to 32"},
		{`allow_networks = ["192.0.2.0/24", "nope"]`, "allow_networks", `allow_networks 2: "nope"`},
		{`allow_client_names = ["a b"]`, "allow_client_names", "is not a domain"},
		{`allow_domains = ["example.com"]`, "allow_domains", `needs stage = "data"`},
		{`auto_allowlist = "yes"`, "auto_allowlist", "expected true or false"},
		{`whitelist = ["x"]`, "whitelist", "unknown setting whitelist"},
	} {
		_, err := sdktest.Configure(&plugin{}, c.config)
		var se *sdk.SettingError
		if !errors.As(err, &se) || se.Key != c.key || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%q: %v, want an error at %s saying %q", c.config, err, c.key, c.text)
		}
	}
}
