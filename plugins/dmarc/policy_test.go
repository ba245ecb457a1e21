package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// configure runs the plugin's Configure on a config table as TOML text.
func configure(t testing.TB, raw string) (*plugin, *sdk.Config, error) {
	t.Helper()
	p := &plugin{}
	c := &sdk.Config{Name: "dmarc", Hostname: "mx.test", Raw: []byte(raw)}
	return p, c, p.Configure(c)
}

func mustConfigure(t testing.TB, raw string) (*plugin, *sdk.Config) {
	t.Helper()
	p, c, err := configure(t, raw)
	if err != nil {
		t.Fatalf("configure %q: %v", raw, err)
	}
	return p, c
}

// describe writes a verdict the way the README's tables do.
func describe(v sdk.Verdict) string {
	var s string
	switch v.Action {
	case abi.Reject, abi.Tempfail:
		s = fmt.Sprintf("%s %d %s %s", v.Action, v.Code, v.Enhanced, v.Text)
	case abi.Quarantine:
		s = "quarantine: " + v.Text
	default:
		s = v.Action.String()
	}
	for _, h := range v.AddHeaders {
		s += ", adds " + h.Name + ": " + h.Value
	}
	return s
}

// decide runs the plugin at data and checks the verdict against the
// permissions it declared, as the gateway would.
func decide(t testing.TB, p *plugin, c *sdk.Config, req *sdk.Request) string {
	t.Helper()
	req.Stage = abi.StageData
	v := p.Data(req)
	if !c.Permissions().Allows((*abi.Verdict)(&v)) {
		t.Errorf("verdict %s is outside the declared permissions %b", describe(v), c.Permissions())
	}
	return describe(v)
}

// failing is a message from example.org that fails DMARC under policy p.
func failing(p string, pct uint32) *sdk.Request {
	return &sdk.Request{
		SessionID: "s1", MailFrom: "bounce@mailer.test", Rcpts: []string{"info@your-domain.test"}, Size: 1000,
		Auth: abi.Auth{
			SPF:   abi.SPF{Result: "pass", Domain: "mailer.test"},
			DKIM:  []abi.DKIM{{Result: "fail", Domain: "example.org", Reason: "body hash mismatch"}},
			DMARC: abi.DMARC{Result: "fail", FromDomain: "example.org", PolicyDomain: "example.org", Policy: p, Pct: pct},
		},
	}
}

// withARC adds a passing ARC chain of these sealers, instance 1 first.
func withARC(r *sdk.Request, oldestPass uint32, sealers ...string) *sdk.Request {
	r.Auth.ARC = abi.ARC{Result: "pass", Instances: uint32(len(sealers)), OldestPass: oldestPass, Sealers: sealers}
	return r
}

const (
	rejected   = "reject 550 5.7.1 Message rejected: example.org's DMARC policy is reject and neither SPF nor DKIM aligned with example.org"
	quarantine = "quarantine: example.org's DMARC policy is quarantine and neither SPF nor DKIM aligned with example.org"
)

func TestDMARCPolicies(t *testing.T) {
	p, c := mustConfigure(t, "")
	pass := failing("reject", 100)
	pass.Auth.DMARC.Result, pass.Auth.DMARC.DKIMAligned = "pass", true
	cases := []struct {
		name string
		req  *sdk.Request
		want string
	}{
		{"pass", pass, "continue"},
		{"reject", failing("reject", 100), rejected},
		{"quarantine", failing("quarantine", 100), quarantine},
		{"none", failing("none", 100), "continue"},
		{"unknown policy word", failing("discard", 100), "continue"},
		{"reject outside the sample is quarantined", failing("reject", 0),
			"quarantine: example.org's DMARC policy is reject for 0% of failing mail and quarantine for the rest; neither SPF nor DKIM aligned with example.org"},
		{"quarantine outside the sample continues", failing("quarantine", 0), "continue"},
		{"no record", &sdk.Request{Auth: abi.Auth{DMARC: abi.DMARC{Result: "none", FromDomain: "example.org"}}}, "continue"},
		{"broken record", &sdk.Request{Auth: abi.Auth{DMARC: abi.DMARC{Result: "permerror", Policy: "reject"}}}, "continue"},
		{"not checked", &sdk.Request{}, "continue"},
	}
	for _, tc := range cases {
		if got := decide(t, p, c, tc.req); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestTemperror(t *testing.T) {
	req := func() *sdk.Request {
		return &sdk.Request{Auth: abi.Auth{
			SPF:   abi.SPF{Result: "fail", Domain: "example.org"},
			DMARC: abi.DMARC{Result: "temperror", FromDomain: "example.org", Reason: "SERVFAIL for _dmarc.example.org"},
		}}
	}
	cases := []struct{ config, want string }{
		{"", "tempfail 451 4.7.1 Cannot check example.org's DMARC policy now (SERVFAIL for _dmarc.example.org), try again later"},
		{`on_temperror = "tempfail"`, "tempfail 451 4.7.1 Cannot check example.org's DMARC policy now (SERVFAIL for _dmarc.example.org), try again later"},
		{`on_temperror = "accept"`, "continue"},
		// Accepting a DMARC temperror does not lift require_authentication.
		{"on_temperror = \"accept\"\nrequire_authentication = true",
			"reject 550 5.7.26 Unauthenticated email from example.org is not accepted: it passes neither SPF nor DKIM"},
	}
	for _, tc := range cases {
		p, c := mustConfigure(t, tc.config)
		if got := decide(t, p, c, req()); got != tc.want {
			t.Errorf("config %q: %q, want %q", tc.config, got, tc.want)
		}
	}
}

func TestRequireAuthentication(t *testing.T) {
	on, cOn := mustConfigure(t, "require_authentication = true")
	off, cOff := mustConfigure(t, "")
	lenient, cLenient := mustConfigure(t, "require_authentication = true\non_temperror = \"accept\"")
	auth := func(spf string, dkim ...string) *sdk.Request {
		r := &sdk.Request{Auth: abi.Auth{
			SPF:   abi.SPF{Result: spf, Domain: "mailer.test"},
			DMARC: abi.DMARC{Result: "none", FromDomain: "example.org"},
		}}
		for _, d := range dkim {
			r.Auth.DKIM = append(r.Auth.DKIM, abi.DKIM{Result: d, Domain: "other.test"})
		}
		return r
	}
	refused := "reject 550 5.7.26 Unauthenticated email from example.org is not accepted: it passes neither SPF nor DKIM"
	deferred := "tempfail 451 4.7.1 Cannot authenticate email from example.org now: SPF or DKIM had a temporary error, try again later"
	cases := []struct {
		name string
		req  *sdk.Request
		want string
	}{
		{"nothing passes", auth("softfail", "fail", "neutral"), refused},
		{"no SPF record, no signature", auth("none"), refused},
		{"SPF passes", auth("pass"), "continue"},
		{"an unaligned DKIM passes", auth("fail", "fail", "pass"), "continue"},
		{"SPF temperror", auth("temperror", "fail"), deferred},
		{"DKIM temperror", auth("fail", "temperror"), deferred},
	}
	for _, tc := range cases {
		if got := decide(t, on, cOn, tc.req); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if got := decide(t, off, cOff, tc.req); got != "continue" {
			t.Errorf("%s without require_authentication: %q, want continue", tc.name, got)
		}
	}
	if got := decide(t, lenient, cLenient, auth("temperror")); got != "continue" {
		t.Errorf("SPF temperror with on_temperror = accept: %q, want continue", got)
	}
	if got := decide(t, lenient, cLenient, auth("fail")); got != refused {
		t.Errorf("SPF fail with on_temperror = accept: %q, want %q", got, refused)
	}

	// Without a From domain the reply names the domain SPF checked.
	r := auth("fail")
	r.Auth.DMARC = abi.DMARC{Result: "permerror", Reason: "no From field"}
	if got, want := decide(t, on, cOn, r), "reject 550 5.7.26 Unauthenticated email from mailer.test is not accepted: it passes neither SPF nor DKIM"; got != want {
		t.Errorf("no From domain: %q, want %q", got, want)
	}
	// A DMARC reject is the more precise reply when both apply.
	r = failing("reject", 100)
	r.Auth.SPF.Result, r.Auth.DKIM = "fail", nil
	if got := decide(t, on, cOn, r); got != rejected {
		t.Errorf("DMARC reject and unauthenticated: %q, want %q", got, rejected)
	}
	// A DMARC quarantine does not save an unauthenticated message.
	r = failing("quarantine", 100)
	r.Auth.SPF.Result, r.Auth.DKIM = "fail", nil
	if got := decide(t, on, cOn, r); got != refused {
		t.Errorf("DMARC quarantine and unauthenticated: %q, want %q", got, refused)
	}
}

func TestTrustedARC(t *testing.T) {
	p, c := mustConfigure(t, `trusted_arc_sealers = ["lists.example.net", "Relay.Example.COM."]`)
	override := func(sealers, policy string) string {
		return "continue, adds Authentication-Results: dmarc=fail (p=" + policy + " not applied: trusted ARC sealer " + sealers + ") header.from=example.org"
	}
	broken := withARC(failing("reject", 100), 2, "lists.example.net", "relay.example.com")
	broken.Auth.ARC.Result = "fail"
	cases := []struct {
		name string
		req  *sdk.Request
		want string
	}{
		{"the only sealer is trusted", withARC(failing("reject", 100), 1, "lists.example.net"), override("lists.example.net", "reject")},
		{"a quarantine is overridden too", withARC(failing("quarantine", 100), 1, "lists.example.net"), override("lists.example.net", "quarantine")},
		{"a sampled-down reject is overridden as quarantine", withARC(failing("reject", 0), 1, "lists.example.net"), override("lists.example.net", "quarantine")},
		{"names compare without case or final dot", withARC(failing("reject", 100), 1, "LISTS.example.net."), override("lists.example.net", "reject")},
		{"untrusted hops after the oldest pass do not matter", withARC(failing("reject", 100), 1, "lists.example.net", "unknown.test"), override("lists.example.net", "reject")},
		{"every hop up to the oldest pass must be trusted", withARC(failing("reject", 100), 2, "lists.example.net", "unknown.test"), rejected},
		{"the first hop must be trusted", withARC(failing("reject", 100), 2, "unknown.test", "lists.example.net"), rejected},
		{"two trusted hops", withARC(failing("reject", 100), 2, "lists.example.net", "relay.example.com"), override("lists.example.net,relay.example.com", "reject")},
		{"a sealer that seals twice is named once", withARC(failing("reject", 100), 2, "lists.example.net", "lists.example.net"), override("lists.example.net", "reject")},
		{"no oldest pass: every sealer must be trusted", withARC(failing("reject", 100), 0, "lists.example.net", "unknown.test"), rejected},
		{"no oldest pass, all trusted", withARC(failing("reject", 100), 0, "lists.example.net", "relay.example.com"), override("lists.example.net,relay.example.com", "reject")},
		{"an oldest pass beyond the chain: every sealer", withARC(failing("reject", 100), 5, "lists.example.net", "unknown.test"), rejected},
		{"a failed chain overrides nothing", broken, rejected},
		{"a chain without sealers overrides nothing", withARC(failing("reject", 100), 1), rejected},
		{"nothing to override when DMARC passes", withARC(&sdk.Request{Auth: abi.Auth{DMARC: abi.DMARC{Result: "pass", Policy: "reject"}}}, 1, "lists.example.net"), "continue"},
		{"nothing to override under policy none", withARC(failing("none", 100), 1, "lists.example.net"), "continue"},
	}
	for _, tc := range cases {
		if got := decide(t, p, c, tc.req); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}

	// Without trusted sealers, no chain overrides anything.
	none, cNone := mustConfigure(t, "")
	if got := decide(t, none, cNone, withARC(failing("reject", 100), 1, "lists.example.net")); got != rejected {
		t.Errorf("no trusted sealers: %q, want %q", got, rejected)
	}
	// A trusted chain does not lift require_authentication: the sealer
	// vouches for DMARC alignment, not for mail nobody authenticated.
	strict, cStrict := mustConfigure(t, "require_authentication = true\ntrusted_arc_sealers = [\"lists.example.net\"]")
	r := withARC(failing("reject", 100), 1, "lists.example.net")
	r.Auth.SPF.Result, r.Auth.DKIM = "fail", nil
	if got, want := decide(t, strict, cStrict, r), "reject 550 5.7.26 Unauthenticated email from example.org is not accepted: it passes neither SPF nor DKIM"; got != want {
		t.Errorf("trusted chain, unauthenticated: %q, want %q", got, want)
	}
}

// inSample must pick about pct percent of messages, and always the same
// ones: every instance asked about one message answers alike.
func TestPctSampling(t *testing.T) {
	p, c := mustConfigure(t, "")
	for _, pct := range []uint32{1, 30, 50, 99} {
		rejects := 0
		const n = 4000
		for i := range n {
			req := failing("reject", pct)
			req.SessionID = fmt.Sprintf("session-%d", i)
			got := decide(t, p, c, req)
			switch {
			case got == rejected:
				rejects++
			case !strings.HasPrefix(got, "quarantine: example.org's DMARC policy is reject for "+fmt.Sprint(pct)+"% of failing mail"):
				t.Fatalf("pct=%d: %q, want a reject or a quarantine naming the pct", pct, got)
			}
			if again := decide(t, p, c, req); again != got {
				t.Fatalf("pct=%d: the same message got %q, then %q", pct, got, again)
			}
		}
		// The inputs are fixed, so this is deterministic; the bounds are
		// wide enough for any even hash and narrow enough to catch a
		// sampling that ignores pct.
		if lo, hi := n*int(pct)/100-n/25, n*int(pct)/100+n/25; rejects < lo || rejects > hi {
			t.Errorf("pct=%d: %d of %d rejected, want %d to %d", pct, rejects, n, lo, hi)
		}
	}
	// Two transactions of one session are sampled apart.
	a, b := failing("reject", 50), failing("reject", 50)
	differ := false
	for i := range 20 {
		b.Rcpts = []string{fmt.Sprintf("r%d@your-domain.test", i)}
		if inSample(a, 50) != inSample(b, 50) {
			differ = true
		}
	}
	if !differ {
		t.Error("twenty transactions with other recipients were all sampled like the first one")
	}
}

func TestUnsafeTextFromTheMessage(t *testing.T) {
	p, c := mustConfigure(t, "")
	r := failing("reject", 100)
	r.Auth.DMARC.FromDomain = "evil.test\r\n250 ok"
	got := decide(t, p, c, r)
	if strings.ContainsAny(got, "\r\n") || !strings.Contains(got, "evil.test??250 ok") {
		t.Errorf("reply %q: control characters from the message must be replaced", got)
	}
	r = &sdk.Request{Auth: abi.Auth{DMARC: abi.DMARC{Result: "temperror", Reason: "timeout\x00"}}}
	if got, want := decide(t, p, c, r), "tempfail 451 4.7.1 Cannot check the From domain's DMARC policy now (timeout?), try again later"; got != want {
		t.Errorf("temperror without a From domain: %q, want %q", got, want)
	}
}

func TestPermissions(t *testing.T) {
	cases := []struct {
		config string
		want   abi.Permissions
	}{
		{"", abi.MayReject | abi.MayQuarantine | abi.MayTempfail},
		{`on_temperror = "accept"`, abi.MayReject | abi.MayQuarantine},
		{`trusted_arc_sealers = ["a.test"]`, abi.MayReject | abi.MayQuarantine | abi.MayTempfail | abi.MayAddHeaders},
		{"require_authentication = true\non_temperror = \"accept\"", abi.MayReject | abi.MayQuarantine},
	}
	for _, tc := range cases {
		_, c := mustConfigure(t, tc.config)
		if c.Permissions() != tc.want {
			t.Errorf("config %q permits %b, want %b", tc.config, c.Permissions(), tc.want)
		}
	}
	if got := sdk.Stages(&plugin{}); got != abi.StageSetOf(abi.StageData) {
		t.Errorf("stages %b, want data only", got)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ name, raw, want string }{
		{"unknown key", `require_auth = true`, "unknown setting require_auth"},
		{"bad on_temperror", `on_temperror = "reject"`, `on_temperror "reject": must be "tempfail" or "accept"`},
		{"sealer with a space", `trusted_arc_sealers = ["lists example.org"]`, `trusted_arc_sealers: "lists example.org" is not a domain name`},
		{"empty sealer", `trusted_arc_sealers = [""]`, `trusted_arc_sealers: "" is not a domain name`},
		{"address as sealer", `trusted_arc_sealers = ["list@example.org"]`, `"list@example.org" is not a domain name`},
		{"empty label", `trusted_arc_sealers = ["a..b"]`, `"a..b" is not a domain name`},
		{"wildcard", `trusted_arc_sealers = ["*.example.org"]`, `"*.example.org" is not a domain name`},
		{"duplicate", `trusted_arc_sealers = ["a.test", "A.test."]`, `trusted_arc_sealers: "A.test." is listed twice`},
		{"wrong type", `require_authentication = "yes"`, "require_authentication"},
		{"not toml", `trusted_arc_sealers = [`, ""},
	}
	for _, tc := range cases {
		_, _, err := configure(t, tc.raw)
		if err == nil {
			t.Errorf("%s: configured cleanly, want an error containing %q", tc.name, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	p, _ := mustConfigure(b, `trusted_arc_sealers = ["lists.example.net"]`)
	cases := map[string]*sdk.Request{
		"pass":         {Auth: abi.Auth{DMARC: abi.DMARC{Result: "pass", Policy: "reject", Pct: 100, DKIMAligned: true}}},
		"reject":       failing("reject", 100),
		"sampled":      failing("reject", 50),
		"arc-override": withARC(failing("reject", 100), 1, "lists.example.net"),
	}
	for name, req := range cases {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Data(req)
			}
		})
	}
}
