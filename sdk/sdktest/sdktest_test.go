package sdktest

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// probe is a plugin whose answers say what it saw, so that the tests can
// check what sdktest sent it and what the host functions answered.
type probe struct {
	Refuse  []string `toml:"refuse"`  // senders to reject at mail
	Permit  string   `toml:"permit"`  // "reject" (default) or "none"
	Verdict string   `toml:"verdict"` // at rcpt: what to answer; "findings": find at mail and rcpt, and tell the findings seen; "user": tell the user at mail, rcpt and data
}

func (p *probe) Configure(c *sdk.Config) error {
	if err := c.Decode(p); err != nil {
		return err
	}
	if p.Permit != "none" {
		c.Permit(abi.MayReject | abi.MayAddHeaders)
	}
	return nil
}

func (p *probe) Mail(req *sdk.Request) sdk.Verdict {
	for _, r := range p.Refuse {
		if r == req.MailFrom {
			return sdk.Reject(550, "5.7.1", "refused "+r)
		}
	}
	switch p.Verdict {
	case "findings":
		return sdk.Continue().Finding("MAIL_SEEN", 1)
	case "user":
		return sdk.Continue().AddHeader("X-User", req.AuthenticatedUser)
	}
	return sdk.Continue()
}

// seen writes the findings of a request: plugin:SYMBOL=score, ...
func seen(req *sdk.Request) string {
	var s []string
	for _, f := range req.Findings {
		s = append(s, f.Plugin+":"+f.Symbol+"="+strconv.FormatFloat(f.Score, 'g', -1, 64))
	}
	return strings.Join(s, ",")
}

func (p *probe) Rcpt(req *sdk.Request) sdk.Verdict {
	switch {
	case strings.HasPrefix(req.Rcpt, "no"):
		return sdk.Reject(0, "", "")
	case p.Verdict == "badcode":
		return sdk.Reject(250, "", "")
	case p.Verdict == "findings":
		return sdk.Continue().Finding("RCPT_SEEN", 0.5).AddHeader("X-Findings", seen(req))
	case p.Verdict == "user":
		return sdk.Continue().AddHeader("X-User", req.AuthenticatedUser)
	case p.Verdict == "panic":
		panic("probe panic")
	case p.Verdict == "header":
		_, err := sdk.Header("Subject")
		return sdk.Continue().AddHeader("X-Err", errText(err))
	}
	return sdk.Continue()
}

// Data reports what it read: the Subject, the body's size, the recipients
// and the request's size, as headers.
func (p *probe) Data(req *sdk.Request) sdk.Verdict {
	subject, err := sdk.Header("Subject")
	if err != nil {
		subject = errText(err)
	}
	body, err := sdk.ReadBody()
	size := strings.Repeat("x", len(body))
	if err != nil {
		size = errText(err)
	}
	switch p.Verdict {
	case "findings":
		return sdk.Continue().AddHeader("X-Findings", seen(req))
	case "user":
		return sdk.Continue().AddHeader("X-User", req.AuthenticatedUser)
	}
	return sdk.Continue().
		AddHeader("X-Subject", subject).
		AddHeader("X-Body", size).
		AddHeader("X-Rcpts", strings.Join(req.Rcpts, ",")).
		AddHeader("X-Size", sdkItoa(req.Size))
}

func (p *probe) Close(*sdk.Request) {}

func errText(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, sdk.ErrDenied):
		return "denied"
	case errors.Is(err, sdk.ErrStage):
		return "stage"
	case errors.Is(err, sdk.ErrNotFound):
		return "notfound"
	}
	return err.Error()
}

func sdkItoa(n uint64) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		n /= 10
		if n == 0 {
			return s
		}
	}
}

const message = "Subject: hello\n  world\nFrom: a@b.test\n\nbody\n"

func TestConfigureDeclares(t *testing.T) {
	p := New(t, &probe{}, `refuse = ["x@y.test"]`)
	if want := abi.StageSetOf(abi.StageMail, abi.StageRcpt, abi.StageData, abi.StageClose); p.Stages() != want {
		t.Errorf("stages %b, want %b", p.Stages(), want)
	}
	if p.Permissions() != abi.MayReject|abi.MayAddHeaders {
		t.Errorf("permissions %b", p.Permissions())
	}
	v := p.Handle(t, &sdk.Request{Stage: abi.StageMail, MailFrom: "x@y.test"})
	if v.Action != abi.Reject || v.Text != "refused x@y.test" {
		t.Errorf("mail verdict %+v", v)
	}
}

func TestConfigureRefused(t *testing.T) {
	_, err := Configure(&probe{}, `refuse = ["x@y.test"]`+"\nrefuze = 1\n")
	if err == nil || !strings.Contains(err.Error(), "config refused: unknown setting refuze") {
		t.Errorf("err = %v, want the SDK's strict refusal", err)
	}
	_, err = Configure(&probe{}, `refuse = "not a list"`)
	if err == nil || !strings.HasPrefix(err.Error(), "config refused:") {
		t.Errorf("err = %v, want a refusal", err)
	}
}

// The host's checks apply: a stage not declared, a verdict outside the
// permissions, a bad reply code, and a panic without tempfail permission
// are all failures.
func TestTryAppliesTheHostsChecks(t *testing.T) {
	p := New(t, &probe{}, "")
	if _, err := p.Try(&sdk.Request{Stage: abi.StageHelo}); err == nil || !strings.Contains(err.Error(), "does not handle helo") {
		t.Errorf("helo: %v, want the stage refused", err)
	}
	none := New(t, &probe{}, `permit = "none"`)
	if _, err := none.Try(&sdk.Request{Stage: abi.StageRcpt, Rcpt: "no@x.test"}); err == nil || !strings.Contains(err.Error(), "outside the permissions") {
		t.Errorf("reject without permission: %v", err)
	}
	bad := New(t, &probe{}, `verdict = "badcode"`)
	if _, err := bad.Try(&sdk.Request{Stage: abi.StageRcpt, Rcpt: "a@x.test"}); err == nil || !strings.Contains(err.Error(), "reply code 250") {
		t.Errorf("reject 250: %v", err)
	}
	panics := New(t, &probe{}, `verdict = "panic"`)
	v, err := panics.Try(&sdk.Request{Stage: abi.StageRcpt, Rcpt: "a@x.test"})
	if err == nil || v.Action != abi.Tempfail || !strings.Contains(v.Text, "probe panic") {
		t.Errorf("panic: %+v, %v, want the SDK's tempfail refused as outside the permissions", v, err)
	}
}

func TestSession(t *testing.T) {
	p := New(t, &probe{}, "")
	steps := p.Session(Envelope{
		ClientIP: "192.0.2.1", Helo: "client.test", MailFrom: "a@b.test",
		Rcpts: []string{"yes@x.test", "no@x.test", "also@x.test"}, Message: []byte(message),
	})
	var got []string
	for _, s := range steps {
		got = append(got, s.String())
	}
	want := []string{
		"mail: continue",
		"rcpt <yes@x.test>: continue",
		"rcpt <no@x.test>: reject 550 5.7.1 Refused by filter sdktest",
		"rcpt <also@x.test>: continue",
		// Headers unfolded, the body with CRLF, refused recipients left
		// out, the size of the message with CRLF line ends.
		"data: continue; add header X-Subject: hello  world; add header X-Body: xxxxxx; add header X-Rcpts: yes@x.test,also@x.test; add header X-Size: " + sdkItoa(uint64(len(message)+5)),
		"close: told",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("session:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if steps[2].Refused() != true || steps[1].Refused() {
		t.Error("Refused is wrong")
	}
}

// The findings of plugins before this one (Envelope.Findings) reach every
// request from the mail stage on, and the plugin's own join them stage by
// stage, each symbol once, as the gateway adds them up.
func TestSessionFindings(t *testing.T) {
	p := New(t, &probe{}, `verdict = "findings"`)
	steps := p.Session(Envelope{
		MailFrom: "a@b.test", Rcpts: []string{"yes@x.test", "also@x.test"}, Message: []byte(message),
		Findings: []abi.PluginFinding{{Plugin: "dnsbl", Symbol: "DNSBL_X", Score: 2.5}, {Plugin: "rspamd", Symbol: "BAYES_SPAM", Score: 4}},
	})
	var got []string
	for _, s := range steps {
		got = append(got, s.String())
	}
	want := []string{
		"mail: continue; finding MAIL_SEEN 1",
		"rcpt <yes@x.test>: continue; add header X-Findings: dnsbl:DNSBL_X=2.5,rspamd:BAYES_SPAM=4,sdktest:MAIL_SEEN=1; finding RCPT_SEEN 0.5",
		"rcpt <also@x.test>: continue; add header X-Findings: dnsbl:DNSBL_X=2.5,rspamd:BAYES_SPAM=4,sdktest:MAIL_SEEN=1,sdktest:RCPT_SEEN=0.5; finding RCPT_SEEN 0.5",
		"data: continue; add header X-Findings: dnsbl:DNSBL_X=2.5,rspamd:BAYES_SPAM=4,sdktest:MAIL_SEEN=1,sdktest:RCPT_SEEN=0.5",
		"close: told",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("session:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A session of the submission service (Envelope.AuthenticatedUser) names
// the user from the mail stage on; one at the MX names none.
func TestSessionAuthenticatedUser(t *testing.T) {
	p := New(t, &probe{}, `verdict = "user"`)
	for _, user := range []string{"alice", ""} {
		steps := p.Session(Envelope{MailFrom: "info@ours.test", Rcpts: []string{"a@x.test"}, Message: []byte(message), AuthenticatedUser: user})
		var got []string
		for _, s := range steps {
			got = append(got, s.String())
		}
		want := []string{"mail: continue; add header X-User: " + user, "rcpt <a@x.test>: continue; add header X-User: " + user,
			"data: continue; add header X-User: " + user, "close: told"}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("session of %q:\n%s\nwant:\n%s", user, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestSessionStopsAtRefusedMail(t *testing.T) {
	p := New(t, &probe{}, `refuse = ["a@b.test"]`)
	steps := p.Session(Envelope{MailFrom: "a@b.test", Rcpts: []string{"yes@x.test"}, Message: []byte(message)})
	if len(steps) != 2 || steps[0].Stage != abi.StageMail || !steps[0].Refused() || steps[1].Stage != abi.StageClose {
		t.Errorf("steps %v, want mail refused then close", steps)
	}
}

func TestHostFunctionRules(t *testing.T) {
	// The message is for the data stage only.
	p := New(t, &probe{}, `verdict = "header"`)
	p.SetMessage([]byte(message))
	if v := p.Handle(t, &sdk.Request{Stage: abi.StageRcpt, Rcpt: "a@x.test"}); v.AddHeaders[0].Value != "stage" {
		t.Errorf("Header at rcpt: %q, want ErrStage", v.AddHeaders[0].Value)
	}
	// A capability the operator did not grant.
	p = New(t, &probe{}, "", Deny(abi.CapBody))
	p.SetMessage([]byte(message))
	v := p.Handle(t, &sdk.Request{Stage: abi.StageData})
	if v.AddHeaders[0].Value != "hello  world" || v.AddHeaders[1].Value != "denied" {
		t.Errorf("with body denied: %+v", v.AddHeaders)
	}
}

// TestHeaderNamesMatchInASCIICase checks that sdk.Header finds a field as
// the gateway's header_get does (sdk/ABI.md): its name in any ASCII case,
// and not a name that matches only under Unicode's case folding
// ("ſubject", with U+017F, is no Subject field).
func TestHeaderNamesMatchInASCIICase(t *testing.T) {
	for _, c := range []struct{ msg, want string }{
		{"SUBJECT: upper\n\nbody\n", "upper"},
		{"subject: lower\n\nbody\n", "lower"},
		{"\u017fubject: long s\n\nbody\n", "notfound"},
	} {
		p := New(t, &probe{}, "")
		p.SetMessage([]byte(c.msg))
		if v := p.Handle(t, &sdk.Request{Stage: abi.StageData}); v.AddHeaders[0].Value != c.want {
			t.Errorf("Subject of %q: %q, want %q", c.msg, v.AddHeaders[0].Value, c.want)
		}
	}
}

// kvPlugin counts calls in the key-value store and in a counter, and looks
// up a TXT record.
type kvPlugin struct{}

func (kvPlugin) Connect(req *sdk.Request) sdk.Verdict {
	n, err := sdk.KVGet("seen:" + req.ClientIP)
	if errors.Is(err, sdk.ErrNotFound) {
		n = nil
	} else if err != nil {
		return sdk.Continue().Finding("KV_"+errText(err), 1)
	}
	n = append(n, 'x')
	if err := sdk.KVSet("seen:"+req.ClientIP, n, time.Minute); err != nil {
		return sdk.Continue().Finding("KVSET_"+errText(err), 1)
	}
	if err := sdk.Count("connects", 1); err != nil {
		return sdk.Continue().Finding("COUNT_"+errText(err), 1)
	}
	txt, err := sdk.LookupTXT("policy.example.test")
	if err != nil {
		return sdk.Continue().Finding("DNS_"+errText(err), 1)
	}
	return sdk.Continue().Finding("SEEN_"+strings.Join(txt, "_"), float64(len(n)))
}

func TestKVCountersAndDNS(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := New(t, kvPlugin{}, "", Clock(func() time.Time { return now }),
		Record(abi.TypeTXT, "policy.example.test.", "v=1", "v=2"))
	req := &sdk.Request{Stage: abi.StageConnect, ClientIP: "192.0.2.1"}
	for want := 1.0; want <= 2; want++ {
		v := p.Handle(t, req)
		if len(v.Findings) != 1 || v.Findings[0] != (abi.Finding{Symbol: "SEEN_v=1_v=2", Score: want}) {
			t.Fatalf("call %v: %+v", want, v.Findings)
		}
	}
	now = now.Add(2 * time.Minute) // the entry expired
	if v := p.Handle(t, req); v.Findings[0].Score != 1 {
		t.Errorf("after the TTL: %+v, want a fresh count", v.Findings)
	}
	if p.Counter("connects") != 3 {
		t.Errorf("counter %v, want 3", p.Counter("connects"))
	}
	denied := New(t, kvPlugin{}, "", Deny(abi.CapKV))
	if v := denied.Handle(t, req); v.Findings[0].Symbol != "KV_denied" {
		t.Errorf("kv denied: %+v", v.Findings)
	}
	nodns := New(t, kvPlugin{}, "")
	if v := nodns.Handle(t, req); v.Findings[0].Symbol != "DNS_notfound" {
		t.Errorf("no record: %+v", v.Findings)
	}
}

// incrPlugin counts mail per client with sdk.KVIncr, in a window of a
// minute, and reports the count, or the error, as a finding.
type incrPlugin struct{}

func (incrPlugin) Mail(req *sdk.Request) sdk.Verdict {
	n, err := sdk.KVIncr("mail:"+req.ClientIP, 1, time.Minute)
	if err != nil {
		return sdk.Continue().Finding("INCR_"+errText(err), 1)
	}
	return sdk.Continue().Finding("COUNT", float64(n))
}

// The native store counts as the gateway's: from 0, with the TTL of the
// first increment, and not over a value that is no number.
func TestKVIncr(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := New(t, incrPlugin{}, "", Clock(func() time.Time { return now }))
	req := &sdk.Request{Stage: abi.StageMail, ClientIP: "192.0.2.1"}
	check := func(what string, want abi.Finding) {
		t.Helper()
		if v := p.Handle(t, req); len(v.Findings) != 1 || v.Findings[0] != want {
			t.Errorf("%s: %+v, want %+v", what, v.Findings, want)
		}
	}
	check("first", abi.Finding{Symbol: "COUNT", Score: 1})
	now = now.Add(59 * time.Second)
	check("second", abi.Finding{Symbol: "COUNT", Score: 2})
	now = now.Add(time.Second) // a minute after the first: a new window
	check("after the window", abi.Finding{Symbol: "COUNT", Score: 1})
	p.host.kv["mail:192.0.2.1"] = entry{value: []byte("one"), expires: now.Add(time.Hour)}
	check("not a number", abi.Finding{Symbol: "INCR_sdk: kv_incr: invalid argument", Score: 1})
}

// lookups makes n DNS lookups in one call and reports the first error.
type lookups struct{ n int }

func (l lookups) Helo(*sdk.Request) sdk.Verdict {
	for i := range l.n {
		if _, err := sdk.LookupTXT("x.example.test"); err != nil {
			return sdk.Continue().Finding("AT_"+sdkItoa(uint64(i))+"_"+errText(err), 1)
		}
	}
	return sdk.Continue()
}

// As in the gateway, a call may make ten lookups; the budget starts again
// with the next call.
func TestDNSBudget(t *testing.T) {
	rec := Record(abi.TypeTXT, "x.example.test", "v")
	if v := New(t, lookups{10}, "", rec).Handle(t, &sdk.Request{Stage: abi.StageHelo}); len(v.Findings) != 0 {
		t.Errorf("ten lookups: %+v", v.Findings)
	}
	p := New(t, lookups{11}, "", rec)
	for range 2 {
		v := p.Handle(t, &sdk.Request{Stage: abi.StageHelo})
		if len(v.Findings) != 1 || !strings.HasPrefix(v.Findings[0].Symbol, "AT_10_") || !strings.HasSuffix(v.Findings[0].Symbol, sdk.ErrBudget.Error()) {
			t.Errorf("eleven lookups: %+v, want the eleventh over budget", v.Findings)
		}
	}
}
