package main

import (
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

const rules = `
[[rule]]
tag = "[list]"
subject = false
header = "X-Tag"
has_header = "List-Id"

[[rule]]
tag = "[SALES]"
rcpt = ["sales@your-domain.test"]
sender = ["partner.example", "boss@example.org"]

[[rule]]
tag = "[EXTERNAL]"
not_sender = ["your-domain.test"]
`

func tagged(t *testing.T, p *sdktest.Plugin, from string, rcpts []string, msg string) string {
	t.Helper()
	steps := p.Session(sdktest.Envelope{ClientIP: "192.0.2.1", MailFrom: from, Rcpts: rcpts, Message: []byte(msg)})
	if len(steps) != 1 || steps[0].Stage != abi.StageData || steps[0].Err != nil {
		t.Fatalf("steps %v, want one good data step", steps)
	}
	return sdktest.Describe(steps[0].Verdict)
}

func TestRules(t *testing.T) {
	p := sdktest.New(t, &plugin{}, rules)
	me := []string{"me@your-domain.test"}
	for _, c := range []struct {
		from  string
		rcpts []string
		msg   string
		want  string
	}{
		{"news@example.org", me, "List-Id: <x>\r\nSubject: News\r\n\r\n", "continue; add header X-Tag: [list]"},
		{"bob@eu.partner.example", []string{"me@your-domain.test", "Sales@Your-Domain.test"}, "Subject: Quote\r\n\r\n",
			"continue; remove header Subject; add header Subject: [SALES] Quote"},
		{"BOSS@example.org", []string{"sales@your-domain.test"}, "Subject: Hi\r\n\r\n", "continue; remove header Subject; add header Subject: [SALES] Hi"},
		{"other@example.org", []string{"sales@your-domain.test"}, "Subject: Hi\r\n\r\n", "continue; remove header Subject; add header Subject: [EXTERNAL] Hi"},
		{"ann@your-domain.test", me, "Subject: Lunch\r\n\r\n", "continue"},
		{"ann@eu.your-domain.test", me, "Subject: Lunch\r\n\r\n", "continue"},
		{"bob@notyour-domain.test", me, "Subject: Hi\r\n\r\n", "continue; remove header Subject; add header Subject: [EXTERNAL] Hi"},
		{"", me, "Subject: Delivery failed\r\n\r\n", "continue; remove header Subject; add header Subject: [EXTERNAL] Delivery failed"},
		{"bob@partner.example", me, "From: bob@partner.example\r\n\r\nno subject", "continue; remove header Subject; add header Subject: [EXTERNAL]"},
		{"bob@partner.example", me, "Subject: Re: [EXTERNAL] Quote\r\n\r\n", "continue"},
		{"bob@partner.example", me, "Subject: folded\r\n  over lines\r\n\r\n", "continue; remove header Subject; add header Subject: [EXTERNAL] folded  over lines"},
	} {
		if got := tagged(t, p, c.from, c.rcpts, c.msg); got != c.want {
			t.Errorf("from <%s> to %v: %s, want %s", c.from, c.rcpts, got, c.want)
		}
	}
}

func TestDMARCRule(t *testing.T) {
	p := sdktest.New(t, &plugin{}, "[[rule]]\ntag = \"[SPOOF?]\"\ndmarc = [\"fail\"]\n")
	req := &sdk.Request{Stage: abi.StageData, MailFrom: "a@example.org", Rcpts: []string{"me@your-domain.test"}}
	p.SetMessage([]byte("Subject: Pay now\r\n\r\n"))
	req.Auth.DMARC.Result = "fail"
	if v := p.Handle(t, req); len(v.AddHeaders) != 1 || v.AddHeaders[0].Value != "[SPOOF?] Pay now" {
		t.Errorf("dmarc fail: %s", sdktest.Describe(v))
	}
	req.Auth.DMARC.Result = "pass"
	if v := p.Handle(t, req); v.Action != abi.Continue || len(v.AddHeaders) != 0 {
		t.Errorf("dmarc pass: %s", sdktest.Describe(v))
	}
}

// The permissions are what the rules need, no more.
func TestPermissions(t *testing.T) {
	p := sdktest.New(t, &plugin{}, "[[rule]]\ntag = \"x\"\nsubject = false\nheader = \"X-T\"\n")
	if p.Permissions() != abi.MayAddHeaders {
		t.Errorf("header-only rules declared %b", p.Permissions())
	}
	p = sdktest.New(t, &plugin{}, rules)
	if p.Permissions() != abi.MayAddHeaders|abi.MayRemoveHeaders {
		t.Errorf("subject rules declared %b", p.Permissions())
	}
}

func TestRefusedSettings(t *testing.T) {
	for config, want := range map[string]string{
		"":                           "no [[plugin.config.rule]]",
		"[[rule]]\nsubject = true\n": "rule 1: tag must be a line of text",
		"[[rule]]\ntag = \"x\"\nsubject = false\n":                             "would do nothing",
		"[[rule]]\ntag = \"x\"\nheader = \"Subject\"\n":                        "add an X- field",
		"[[rule]]\ntag = \"x\"\ndmarc = [\"failed\"]\n":                        `dmarc "failed" is not one of`,
		"[[rule]]\ntag = \"x\"\nsender = [\"*@x.test\"]\n":                     "neither an address nor a domain",
		"[[rule]]\ntag = \"x\"\n[[rule]]\ntag = \"y\"\nsendr = [\"x.test\"]\n": "unknown setting rule.sendr",
	} {
		if _, err := sdktest.Configure(&plugin{}, config); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", config, err, want)
		}
	}
	if _, err := sdktest.Configure(&plugin{}, rules, sdktest.Deny(abi.CapHeaders)); err == nil || !strings.Contains(err.Error(), "grant it the headers capability") {
		t.Errorf("without headers: %v", err)
	}
}
