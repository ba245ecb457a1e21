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

// clock is a settable time, for the store's TTLs and the sliding windows.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// start is on a minute's boundary, so that sliding windows of a minute
// begin there.
var start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// newPlugin configures the plugin natively, its store and its sliding
// windows on clk.
func newPlugin(t *testing.T, config string, clk *clock, opts ...sdktest.Option) *sdktest.Plugin {
	t.Helper()
	p := &plugin{}
	sp := sdktest.New(t, p, config, append(opts, sdktest.Clock(clk.Now))...)
	p.limiter.now = clk.Now
	return sp
}

// reply is a verdict in a reply's words: "continue", or "450 4.7.1 text".
func reply(v sdk.Verdict) string {
	if v.Failure != "" {
		return "failure: " + v.Failure
	}
	switch v.Action {
	case abi.Continue:
		return "continue"
	case abi.Tempfail:
		return strings.Join([]string{strconv.Itoa(int(v.Code)), v.Enhanced, v.Text}, " ")
	}
	return v.Action.String()
}

func mail(ip, from string) *sdk.Request {
	return &sdk.Request{Stage: abi.StageMail, SessionID: "s", ClientIP: ip, MailFrom: from}
}

// expect sends reqs in order and checks each answer.
func expect(t *testing.T, p *sdktest.Plugin, req *sdk.Request, want string) {
	t.Helper()
	if got := reply(p.Handle(t, req)); got != want {
		t.Errorf("%s from %s <%s> %s: %q, want %q", req.Stage, req.ClientIP, req.MailFrom, req.Rcpt, got, want)
	}
}

func TestClientFixedWindow(t *testing.T) {
	clk := &clock{start}
	p := newPlugin(t, `
[[limit]]
count = "client"
max = 2
per = "1m"
`, clk)
	over := "450 4.7.1 Client 192.0.2.1 exceeded 2 messages per 1m, try again later"
	expect(t, p, mail("192.0.2.1", "a@example.org"), "continue")
	clk.now = clk.now.Add(30 * time.Second)
	expect(t, p, mail("192.0.2.1", "b@example.net"), "continue")
	expect(t, p, mail("192.0.2.1", "a@example.org"), over)
	expect(t, p, mail("192.0.2.2", "a@example.org"), "continue") // another client
	// The window is a minute from the first message, not from the last.
	clk.now = start.Add(59 * time.Second)
	expect(t, p, mail("192.0.2.1", "a@example.org"), over)
	clk.now = start.Add(60 * time.Second)
	expect(t, p, mail("192.0.2.1", "a@example.org"), "continue")
	// An IPv4-mapped IPv6 address is the IPv4 client.
	expect(t, p, mail("::ffff:192.0.2.1", "a@example.org"), "continue")
	expect(t, p, mail("192.0.2.1", "a@example.org"), over)
}

func TestClientIPv6Network(t *testing.T) {
	clk := &clock{start}
	p := newPlugin(t, `
[[limit]]
count = "client"
max = 1
per = "1h"
`, clk)
	expect(t, p, mail("2001:db8:1:2::1", "a@example.org"), "continue")
	expect(t, p, mail("2001:db8:1:2:ffff::9", "a@example.org"),
		"450 4.7.1 Client network 2001:db8:1:2::/64 exceeded 1 message per 1h, try again later")
	expect(t, p, mail("2001:db8:1:3::1", "a@example.org"), "continue")

	// The prefixes are settable; IPv4 by /24 here.
	p = newPlugin(t, `
ipv4_prefix = 24
ipv6_prefix = 128
[[limit]]
count = "client"
max = 1
per = "1h"
`, clk)
	expect(t, p, mail("198.51.100.7", ""), "continue")
	expect(t, p, mail("198.51.100.200", ""), "450 4.7.1 Client network 198.51.100.0/24 exceeded 1 message per 1h, try again later")
	expect(t, p, mail("2001:db8::1", ""), "continue")
	expect(t, p, mail("2001:db8::2", ""), "continue")
}

func TestSenderAndRecipient(t *testing.T) {
	clk := &clock{start}
	p := newPlugin(t, `
code = 421
[[limit]]
count = "sender_domain"
max = 2
per = "1d"
[[limit]]
count = "recipient"
max = 1
per = "10m"
`, clk)
	expect(t, p, mail("192.0.2.1", "a@Example.ORG"), "continue")
	expect(t, p, mail("192.0.2.9", "b@example.org"), "continue")
	expect(t, p, mail("192.0.2.1", "c@example.org"), "421 4.7.1 Sender domain example.org exceeded 2 messages per 1d, try again later")
	for range 3 { // the null sender has no domain to count
		expect(t, p, mail("192.0.2.1", ""), "continue")
	}
	rcpt := &sdk.Request{Stage: abi.StageRcpt, ClientIP: "192.0.2.1", MailFrom: "a@example.net", Rcpt: "Info@your-domain.test"}
	expect(t, p, rcpt, "continue")
	rcpt.Rcpt = "info@your-domain.test"
	expect(t, p, rcpt, "421 4.7.1 Recipient info@your-domain.test exceeded 1 message per 10m, try again later")
	rcpt.Rcpt = "sales@your-domain.test"
	expect(t, p, rcpt, "continue")
	// Limits decided at mail and rcpt do not count at data.
	data := &sdk.Request{Stage: abi.StageData, ClientIP: "192.0.2.1", MailFrom: "a@example.net", Rcpts: []string{"sales@your-domain.test"}}
	expect(t, p, data, "continue")
}

// A user limit counts the mail each user of the submission service sends,
// whatever the client's address; mail with no user (the MX's) is not
// counted by it.
func TestUser(t *testing.T) {
	clk := &clock{start}
	p := newPlugin(t, `
[[limit]]
count = "user"
max = 2
per = "1h"
`, clk)
	asUser := func(ip, user string) *sdk.Request {
		r := mail(ip, "info@your-domain.test")
		r.AuthenticatedUser = user
		return r
	}
	expect(t, p, asUser("192.0.2.1", "alice"), "continue")
	expect(t, p, asUser("198.51.100.7", "alice"), "continue")
	expect(t, p, asUser("192.0.2.1", "alice"), "450 4.7.1 User alice exceeded 2 messages per 1h, try again later")
	expect(t, p, asUser("192.0.2.1", "bob"), "continue")
	for range 3 {
		expect(t, p, asUser("192.0.2.1", ""), "continue")
	}
	clk.now = start.Add(time.Hour)
	expect(t, p, asUser("192.0.2.1", "alice"), "continue")
}

// spfPass is a data-stage request whose sender SPF passed for domain.
func spfPass(ip, domain string) *sdk.Request {
	return &sdk.Request{Stage: abi.StageData, ClientIP: ip, MailFrom: "x@" + domain, Rcpts: []string{"info@your-domain.test"},
		Auth: abi.Auth{SPF: abi.SPF{Result: "pass", Domain: domain}}}
}

func TestAuthenticatedDomain(t *testing.T) {
	clk := &clock{start}
	p := newPlugin(t, `
exempt_domains = [".bulk.example"]  # a leading dot reads as the domain, as in greylist
[[limit]]
count = "authenticated_domain"
max = 2
per = "1h"
`, clk)
	expect(t, p, spfPass("192.0.2.1", "example.org"), "continue")
	// SPF and DKIM passing for the same domain count it once.
	req := spfPass("192.0.2.2", "Example.org")
	req.Auth.DKIM = []abi.DKIM{{Result: "pass", Domain: "example.org"}, {Result: "pass", Domain: "signer.example"}}
	expect(t, p, req, "continue")
	expect(t, p, spfPass("192.0.2.3", "example.org"), "450 4.7.1 Authenticated domain example.org exceeded 2 messages per 1h, try again later")
	// A signature that does not pass counts nothing; signer.example was
	// counted once above.
	req = spfPass("192.0.2.3", "other.example")
	req.Auth.DKIM = []abi.DKIM{{Result: "fail", Domain: "example.org"}, {Result: "pass", Domain: "signer.example"}}
	expect(t, p, req, "continue")
	expect(t, p, req, "450 4.7.1 Authenticated domain signer.example exceeded 2 messages per 1h, try again later")
	// Exempt: the domain and its subdomains, when authenticated.
	for range 4 {
		expect(t, p, spfPass("192.0.2.1", "news.bulk.example"), "continue")
	}
	req = spfPass("192.0.2.1", "example.org")
	req.Auth.SPF.Result = "softfail"
	req.Auth.DKIM = []abi.DKIM{{Result: "pass", Domain: "bulk.example"}}
	expect(t, p, req, "continue")
}

// With stage = "data" every limit waits for authentication, so that an
// authenticated domain is exempt from all of them.
func TestStageData(t *testing.T) {
	clk := &clock{start}
	p := newPlugin(t, `
stage = "data"
exempt_domains = ["partner.example"]
exempt_networks = ["203.0.113.0/24", "2001:db8:ffff::1"]
[[limit]]
count = "client"
max = 1
per = "1h"
[[limit]]
count = "recipient"
max = 2
per = "1h"
`, clk)
	if p.Stages() != abi.StageSetOf(abi.StageMail, abi.StageRcpt, abi.StageData) {
		t.Errorf("stages %v", p.Stages())
	}
	expect(t, p, mail("192.0.2.1", "a@example.org"), "continue") // not counted at mail
	expect(t, p, mail("192.0.2.1", "a@example.org"), "continue")
	expect(t, p, spfPass("192.0.2.1", "example.org"), "continue")
	expect(t, p, spfPass("192.0.2.1", "example.org"), "450 4.7.1 Client 192.0.2.1 exceeded 1 message per 1h, try again later")
	for range 3 {
		expect(t, p, spfPass("192.0.2.1", "partner.example"), "continue")
		expect(t, p, spfPass("203.0.113.50", "example.org"), "continue")
		expect(t, p, spfPass("2001:db8:ffff::1", "example.org"), "continue")
	}
	// Each recipient of a message counts.
	req := spfPass("192.0.2.2", "example.org")
	req.Rcpts = []string{"a@your-domain.test", "b@your-domain.test"}
	expect(t, p, req, "continue")
	req = spfPass("192.0.2.3", "example.org")
	req.Rcpts = []string{"b@your-domain.test", "c@your-domain.test"}
	expect(t, p, req, "continue")
	req = spfPass("192.0.2.4", "example.org")
	req.Rcpts = []string{"c@your-domain.test", "b@your-domain.test"}
	expect(t, p, req, "450 4.7.1 Recipient b@your-domain.test exceeded 2 messages per 1h, try again later")
}

// A sliding window weighs the previous window by how much of it is still
// inside: just after a window turns, a client that used it all is still
// over, where a fixed window would let it start again.
func TestSlidingWindow(t *testing.T) {
	clk := &clock{start}
	p := newPlugin(t, `
window = "sliding"
[[limit]]
count = "client"
max = 10
per = "1m"
`, clk)
	over := "450 4.7.1 Client 192.0.2.1 exceeded 10 messages per 1m, try again later"
	for range 10 {
		expect(t, p, mail("192.0.2.1", ""), "continue")
	}
	expect(t, p, mail("192.0.2.1", ""), over) // 11 in this window
	clk.now = start.Add(61 * time.Second)
	expect(t, p, mail("192.0.2.1", ""), over) // 1 + 11 × 59/60
	clk.now = start.Add(90 * time.Second)
	expect(t, p, mail("192.0.2.1", ""), "continue") // 2 + 11 × 1/2
	expect(t, p, mail("192.0.2.1", ""), "continue") // 3 + 5.5
	expect(t, p, mail("192.0.2.1", ""), "continue") // 4 + 5.5
	expect(t, p, mail("192.0.2.1", ""), over)       // 5 + 5.5
	clk.now = start.Add(3 * time.Minute)            // the windows before are gone
	expect(t, p, mail("192.0.2.1", ""), "continue")
}

// A store that fails is a failure of the plugin, which on_failure turns
// into a deferral (the default) or lets through: never a refusal that
// lasts.
func TestStoreFailure(t *testing.T) {
	clk := &clock{start}
	p := newPlugin(t, "[[limit]]\ncount = \"client\"\nmax = 5\nper = \"1m\"\n", clk, sdktest.Deny(abi.CapKV))
	v, err := p.Try(mail("192.0.2.1", ""))
	if err != nil || v.Failure == "" || !strings.Contains(v.Failure, "counting Client 192.0.2.1") || v.Action != abi.Tempfail || v.Code != 451 {
		t.Errorf("with the store denied: %+v, %v; want a failure", v, err)
	}
}

func TestConfigErrors(t *testing.T) {
	limit := "[[limit]]\ncount = \"client\"\nmax = 5\nper = \"1m\"\n"
	for _, c := range []struct{ config, key, text string }{
		{``, "limit", "no [[limit]]"},
		{"[[limit]]\ncount = \"ip\"\nmax = 5\nper = \"1m\"\n", "limit.0.count", `count "ip": want client, sender_domain, authenticated_domain, recipient or user`},
		{"[[limit]]\ncount = \"client\"\nmax = 0\nper = \"1m\"\n", "limit.0.max", "max must be 1 or more"},
		{"[[limit]]\ncount = \"client\"\nmax = 5\n", "limit.0.per", "per is required"},
		{"[[limit]]\ncount = \"client\"\nmax = 5\nper = \"1 hour\"\n", "limit.0.per", "want a number and a unit"},
		{"[[limit]]\ncount = \"client\"\nmax = 5\nper = \"10ms\"\n", "limit.0.per", "want 1s to 366d"},
		{"code = 550\n" + limit, "code", "want 450"},
		{"window = \"rolling\"\n" + limit, "window", `window "rolling"`},
		{"stage = \"rcpt\"\n" + limit, "stage", `stage "rcpt"`},
		{"ipv6_prefix = 8\n" + limit, "ipv6_prefix", "want 16 to 128"},
		{"exempt_networks = [\"10.0.0.0/33\"]\n" + limit, "exempt_networks", `"10.0.0.0/33" is not a network`},
		{"exempt_domains = [\"a@b\"]\n" + limit, "exempt_domains", "is not a domain"},
		{"exempt_domains = [\"partner.example\"]\n" + limit, "exempt_domains", "add an authenticated_domain limit, or set stage"},
		{"rate = 5\n" + limit, "rate", "unknown setting rate"},
	} {
		_, err := sdktest.Configure(&plugin{}, c.config)
		var se *sdk.SettingError
		if !errors.As(err, &se) || se.Key != c.key || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%q: %v, want an error at %s saying %q", c.config, err, c.key, c.text)
		}
	}
}
