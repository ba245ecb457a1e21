package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/rspamdtest"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// rspamdData is a data-stage request for msg as the gateway makes it.
func rspamdData(msg string) (*abi.Request, *Message) {
	return &abi.Request{
		Stage: abi.StageData, SessionID: "s1", ClientIP: "192.0.2.7", Helo: "mail.example.org",
		ClientName: "mail.example.org", ClientNameResult: "pass",
		MailFrom: "alice@example.org", Rcpts: []string{"info@example.test", "sales@example.test"}, Size: uint64(len(msg)),
	}, NewMessage([]byte(msg))
}

func rspamdMessage(extra, body string) string {
	return "From: Alice <alice@example.org>\r\nTo: info@example.test\r\nSubject: Hello\r\n" +
		"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n" + extra + "\r\n" + body + "\r\n"
}

// The real plugins/rspamd module, through the host, against a real
// rspamd that the test starts: GTUBE is refused with rspamd's text, a
// clean message passes, each action maps to what the README says, and
// symbols become findings.
func TestRspamdPluginWithRealRspamd(t *testing.T) {
	rs := rspamdtest.Start(t)
	addr := rs.Addr
	h, logs := newHost(t)
	spec := Spec{
		Name: "rspamd", Path: wasmbuild.ForTest(t, "./plugins/rspamd"), Instances: 1,
		Config:       []byte(`url = "http://` + addr + `"`),
		Capabilities: abi.CapHeaders | abi.CapBody | abi.CapHTTP, HTTPHosts: []string{addr},
		Timeout: 10 * time.Second,
	}
	c := NewChain(load(t, h, spec))

	o := runRspamd(c, rspamdMessage("", rspamdtest.GTUBE))
	if o.Action != abi.Reject || o.Reply == nil || o.Reply.Code != 550 || o.Reply.EnhancedCode != [3]int{5, 7, 1} ||
		o.Reply.Message != "Gtube pattern" {
		t.Errorf("GTUBE: outcome %+v, reply %+v; want 550 5.7.1 Gtube pattern", o, o.Reply)
	}

	o = runRspamd(c, rspamdMessage("", "Hi, lunch on Friday?"))
	if o.Action != abi.Continue || o.Reply != nil || o.Quarantine != "" || len(o.AddHeaders) != 0 || len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil {
		t.Errorf("clean: outcome %+v, want a plain continue", o)
	}

	for _, cs := range []struct {
		score float64
		want  string
	}{
		{2.5, "continue"},
		{rspamdtest.Greylist + 0.5, "continue"},
		{rspamdtest.AddHeader + 0.5, "continue, adds X-Spam: Yes"},
		{rspamdtest.RewriteSubject + 0.5, "continue, removes Subject, adds X-Spam: Yes, Subject: " + rspamdtest.SubjectPrefix + "Hello"},
		{rspamdtest.SoftReject + 0.5, "tempfail 451 4.7.1 Try again later"},
		{rspamdtest.Reject + 0.5, "reject 550 5.7.1 Spam message rejected"},
	} {
		o := runRspamd(c, rspamdMessage(fmt.Sprintf("%s: %v\r\n", rspamdtest.ScoreHeader, cs.score), "Hi"))
		if got := describeOutcome(o); got != cs.want {
			t.Errorf("score %v: %s, want %s", cs.score, got, cs.want)
		}
		want := []abi.Finding{{Symbol: rspamdtest.EnvelopeSymbol, Score: 0.01}, {Symbol: rspamdtest.TestSymbol, Score: cs.score}}
		if len(o.Verdicts) != 1 || fmt.Sprint(o.Verdicts[0].Findings) != fmt.Sprint(want) {
			t.Errorf("score %v: findings %+v, want %v", cs.score, o.Verdicts, want)
		}
	}
	// What rspamd was told about the envelope, as its rule saw it.
	envelope := "ip=192.0.2.7 helo=mail.example.org hostname=mail.example.org from=alice@example.org rcpt=info@example.test,sales@example.test queue-id=s1"
	if !strings.Contains(rs.Log(), envelope) {
		t.Errorf("rspamd's log does not show the envelope %q:\n%s", envelope, rs.Log())
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warnings logged:\n%s", logs)
	}
}

// rspamd unreachable: skipped by default, deferred with on_error =
// "tempfail"; never refused for good.
func TestRspamdPluginUnreachable(t *testing.T) {
	h, logs := newHost(t)
	addr := "127.0.0.1:9" // discard: nothing listens there
	for _, cs := range []struct {
		config string
		want   string
	}{
		{``, "continue"},
		{`on_error = "tempfail"`, "tempfail 451 4.3.0 Cannot check the message for spam now, try again later"},
	} {
		p := load(t, h, Spec{
			Name: "rspamd", Path: wasmbuild.ForTest(t, "./plugins/rspamd"), Instances: 1,
			Config:       []byte(`url = "http://` + addr + `"` + "\n" + cs.config),
			Capabilities: abi.CapHeaders | abi.CapBody | abi.CapHTTP, HTTPHosts: []string{addr},
		})
		o := runRspamd(NewChain(p), rspamdMessage("", "Hi"))
		if got := describeOutcome(o); got != cs.want {
			t.Errorf("%s: %s, want %s", cs.config, got, cs.want)
		}
	}
	if !strings.Contains(logs.String(), "http request failed") || !strings.Contains(logs.String(), "rspamd: sdk: http_request: temporary failure") {
		t.Errorf("the failure is not logged:\n%s", logs)
	}
	// A URL outside http_hosts refuses the load, at the url setting.
	_, err := h.Load(context.Background(), Spec{
		Name: "rspamd", Path: wasmbuild.ForTest(t, "./plugins/rspamd"), Instances: 1,
		Config:       []byte(`url = "http://127.0.0.1:11333"`),
		Capabilities: abi.CapHeaders | abi.CapBody | abi.CapHTTP, HTTPHosts: []string{addr},
	})
	if err == nil || !strings.Contains(err.Error(), "host not allowed") {
		t.Errorf("Load with a url outside http_hosts = %v", err)
	}
}

func runRspamd(c *Chain, msg string) Outcome {
	req, m := rspamdData(msg)
	return c.Run(context.Background(), req, m)
}

// describeOutcome writes what the chain decided as the README does.
func describeOutcome(o Outcome) string {
	s := o.Action.String()
	if o.Reply != nil {
		e := o.Reply.EnhancedCode
		s += fmt.Sprintf(" %d %d.%d.%d %s", o.Reply.Code, e[0], e[1], e[2], o.Reply.Message)
	}
	if o.Quarantine != "" {
		s += "; quarantine: " + o.Quarantine
	}
	if len(o.RemoveHeaders) > 0 {
		s += ", removes " + strings.Join(o.RemoveHeaders, ", ")
	}
	if len(o.AddHeaders) > 0 {
		var fields []string
		for _, h := range o.AddHeaders {
			fields = append(fields, h.Name+": "+h.Value)
		}
		s += ", adds " + strings.Join(fields, ", ")
	}
	return s
}
