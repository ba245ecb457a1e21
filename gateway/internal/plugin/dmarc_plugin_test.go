package plugin

import (
	"context"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// dmarcData is a data-stage request for mail from example.org that passed
// SPF for the envelope's domain and failed DMARC under policy p, as the
// gateway's checks would report it.
func dmarcData(result, p string) *abi.Request {
	return &abi.Request{
		Stage: abi.StageData, SessionID: "s1", ClientIP: "127.0.0.1", MailFrom: "bounce@lists.example.net",
		Rcpts: []string{"info@example.test"}, Size: 2048,
		Auth: abi.Auth{
			SPF:   abi.SPF{Result: "pass", Domain: "lists.example.net"},
			DKIM:  []abi.DKIM{{Result: "fail", Domain: "example.org", Selector: "s1", Reason: "body hash did not verify"}},
			DMARC: abi.DMARC{Result: result, FromDomain: "example.org", PolicyDomain: "example.org", Policy: p, Pct: 100},
		},
	}
}

// The real plugins/dmarc module, built from source, through the host's
// chain: what it declares, and each kind of answer as the gateway sees it.
func TestDMARCPluginThroughChain(t *testing.T) {
	h, _ := newHost(t)
	p := load(t, h, Spec{
		Name:      "dmarc",
		Path:      wasmbuild.ForTest(t, "./plugins/dmarc"),
		Config:    []byte("trusted_arc_sealers = [\"lists.example.net\"]\nrequire_authentication = true\n"),
		Hostname:  "mx.example.test",
		Instances: 1,
	})
	if p.Stages() != abi.StageSetOf(abi.StageData) {
		t.Errorf("dmarc is called at %s, want data only", stageList(p.Stages()))
	}
	if want := abi.MayReject | abi.MayQuarantine | abi.MayTempfail | abi.MayAddHeaders; p.Permissions() != want {
		t.Errorf("dmarc permissions = %b, want %b", p.Permissions(), want)
	}
	c := NewChain(p)
	ctx := context.Background()

	o := c.Run(ctx, dmarcData("fail", "reject"), nil)
	if o.Action != abi.Reject || o.Reply == nil || o.Reply.Code != 550 || o.Reply.EnhancedCode != [3]int{5, 7, 1} ||
		o.Reply.Message != "Message rejected: example.org's DMARC policy is reject and neither SPF nor DKIM aligned with example.org" {
		t.Errorf("reject: outcome %+v, reply %+v", o, o.Reply)
	}
	if len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil {
		t.Errorf("reject: records %+v, want one clean record", o.Verdicts)
	}

	o = c.Run(ctx, dmarcData("fail", "quarantine"), nil)
	if o.Action != abi.Continue || o.Reply != nil ||
		o.Quarantine != "example.org's DMARC policy is quarantine and neither SPF nor DKIM aligned with example.org" {
		t.Errorf("quarantine: outcome %+v, want continue with the quarantine reason", o)
	}

	req := dmarcData("fail", "reject")
	req.Auth.ARC = abi.ARC{Result: "pass", Instances: 2, OldestPass: 1, Sealers: []string{"lists.example.net", "relay.test"}}
	o = c.Run(ctx, req, nil)
	want := abi.Header{Name: "Authentication-Results", Value: "dmarc=fail (p=reject not applied: trusted ARC sealer lists.example.net) header.from=example.org"}
	if o.Action != abi.Continue || o.Reply != nil || o.Quarantine != "" || len(o.AddHeaders) != 1 || o.AddHeaders[0] != want {
		t.Errorf("ARC override: outcome %+v, want continue adding %+v", o, want)
	}

	req = dmarcData("pass", "reject")
	req.Auth.DMARC.DKIMAligned = true
	o = c.Run(ctx, req, nil)
	if o.Action != abi.Continue || o.Reply != nil || o.Quarantine != "" || len(o.AddHeaders) != 0 {
		t.Errorf("pass: outcome %+v, want a plain continue", o)
	}

	req = dmarcData("none", "")
	req.Auth.SPF.Result, req.Auth.DKIM = "softfail", nil
	o = c.Run(ctx, req, nil)
	if o.Action != abi.Reject || o.Reply == nil || o.Reply.Code != 550 || o.Reply.EnhancedCode != [3]int{5, 7, 26} ||
		o.Reply.Message != "Unauthenticated email from example.org is not accepted: it passes neither SPF nor DKIM" {
		t.Errorf("unauthenticated: outcome %+v, reply %+v", o, o.Reply)
	}

	o = c.Run(ctx, dmarcData("temperror", ""), nil)
	if o.Action != abi.Tempfail || o.Reply == nil || o.Reply.Code != 451 || o.Reply.EnhancedCode != [3]int{4, 7, 1} {
		t.Errorf("temperror: outcome %+v, reply %+v", o, o.Reply)
	}
}

// BenchmarkChainDMARCData is one message through a chain of the dmarc
// plugin: a data-stage request with its Auth fields, the pct hash, and a
// reject or a quarantine.
func BenchmarkChainDMARCData(b *testing.B) {
	h, _ := newHost(b)
	c := NewChain(load(b, h, Spec{Name: "dmarc", Path: wasmbuild.ForTest(b, "./plugins/dmarc"), Instances: 1}))
	req := dmarcData("fail", "reject")
	req.Auth.DMARC.Pct = 50
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if o := c.Run(ctx, req, nil); o.Action != abi.Reject && o.Quarantine == "" {
			b.Fatalf("outcome %+v", o)
		}
	}
}
