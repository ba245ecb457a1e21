package gateway_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// startSenderMX starts the MX of sender.test, where DSNs to
// alice@sender.test arrive: another destination, on 127.0.0.2 at the
// port the relay uses, which the zone names.
func startSenderMX(t *testing.T, e *env) *destination {
	t.Helper()
	mx := startDestinationOn(t, "127.0.0.2:"+e.dest.port(), false)
	e.addRecords(t, "sender.test.     300 IN MX 10 mx.sender.test.\nmx.sender.test.  300 IN A 127.0.0.2\n")
	return mx
}

// queuedForward is a message the session queued for bad@dest.test (or
// to), from alice@sender.test whom SPF or DMARC authenticated.
func queuedForward(to string) *queue.Message {
	return &queue.Message{
		Kind: queue.Forward, From: "SRS0=abcd=XY=sender.test=alice@ours.test", Sender: "alice@sender.test", MayBounce: true,
		Recipients: []queue.Recipient{{Orig: "info@ours.test", To: to}},
		ClientIP:   "192.0.2.7", Helo: "mail.sender.test", SessionID: "S1",
		Data: []byte("Received: from mail.sender.test by mx.ours.test; Mon, 2 Mar 2026 09:00:00 +0000\r\n" +
			"From: Alice <alice@sender.test>\r\nTo: info@ours.test\r\nSubject: The quarterly figures\r\n" +
			"Message-ID: <figures-1@sender.test>\r\n\r\nThe figures.\r\n"),
	}
}

// dsnReport is what Python's email package reads in a DSN (the fields
// the tests look at).
type dsnReport struct {
	Header     [][2]string   `json:"header"`
	ReportType string        `json:"report_type"`
	Parts      []string      `json:"parts"`
	Text       string        `json:"text"`
	Status     [][][2]string `json:"status"`
	Original   [][2]string   `json:"original"`
}

func (r dsnReport) field(fields [][2]string, name string) string {
	for _, f := range fields {
		if strings.EqualFold(f[0], name) {
			return f[1]
		}
	}
	return ""
}

// wantFields checks the fields of fields that want names (one status
// block of the report, or its header); what says which DSN it is.
func (r dsnReport) wantFields(t *testing.T, what string, fields [][2]string, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if got := r.field(fields, name); got != w {
			t.Errorf("%s: %s = %q, want %q", what, name, got, w)
		}
	}
}

// parseDSN is msg as Python's email package reads it.
func parseDSN(t *testing.T, msg []byte) dsnReport {
	t.Helper()
	out := dkimpy.Run(t, "internal/dsn/testdata/parse.py", dkimpy.WriteFile(t, "dsn.eml", msg))
	var r dsnReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("parse.py said %q: %v", out, err)
	}
	return r
}

// waitQueueEmpty waits until e's queue holds nothing: every queued
// message delivered, or failed and its DSN queued and delivered.
func waitQueueEmpty(t *testing.T, e *env) {
	t.Helper()
	waitFor(t, "the queue to empty", func() bool { l, _ := e.gw.Queue().List(context.Background()); return len(l) == 0 })
}

// receivedDSN checks what the sender's MX received: a DSN from <> to
// alice@sender.test, our two DKIM signatures valid (dkimpy), and returns
// it as Python's email package reads it.
func receivedDSN(t *testing.T, e *env, d delivery) dsnReport {
	t.Helper()
	return receivedDSNFor(t, e, d, "alice@sender.test", "<figures-1@sender.test>")
}

// receivedDSNFor is receivedDSN for a DSN to sender about the message
// msgID.
func receivedDSNFor(t *testing.T, e *env, d delivery, sender, msgID string) dsnReport {
	t.Helper()
	if d.from != "" || strings.Join(d.to, ",") != sender {
		t.Errorf("the sender's MX received from <%s> to %v, want a DSN from <> to %s", d.from, d.to, sender)
	}
	signedByUs(t, e, d.data)
	r := parseDSN(t, d.data)
	if r.ReportType != "delivery-status" || strings.Join(r.Parts, " ") != "text/plain message/delivery-status text/rfc822-headers" ||
		len(r.Status) != 2 {
		t.Fatalf("report-type %q with parts %v and %d status blocks, want a delivery-status report of 3 parts, 2 blocks",
			r.ReportType, r.Parts, len(r.Status))
	}
	if got := r.field(r.Original, "Message-ID"); got != msgID {
		t.Errorf("the attached header's Message-ID is %q, want the original's", got)
	}
	return r
}

// signedByUs checks that dkimpy verifies our two DKIM signatures on msg.
func signedByUs(t *testing.T, e *env, msg []byte) {
	t.Helper()
	records := map[string]string{}
	for sel, txt := range e.keys {
		records[sel+"._domainkey.ours.test."] = txt
	}
	if got := dkimpy.Check(t, msg, records); len(got.DKIM) != 2 || !got.DKIM[0] || !got.DKIM[1] {
		t.Errorf("dkimpy: DKIM results %v, want our two signatures valid", got.DKIM)
	}
}

// A queued message the destination refuses with 550 brings its sender a
// DSN, through the queue, at the sender's own MX.
func TestDSNEndToEnd(t *testing.T) {
	e := startEnv(t, envOptions{})
	mx := startSenderMX(t, e)
	m := queuedForward("bad@dest.test")
	if err := e.gw.Queue().Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the DSN at the sender's MX", func() bool { return len(mx.deliveries()) > 0 })
	r := receivedDSN(t, e, mx.deliveries()[0])
	if got := r.field(r.Header, "Subject"); got != "Undelivered Mail Returned to Sender" {
		t.Errorf("Subject %q", got)
	}
	rcpt := r.Status[1]
	r.wantFields(t, "DSN", rcpt, map[string]string{
		"Original-Recipient": "rfc822;info@ours.test",
		"Final-Recipient":    "rfc822;bad@dest.test",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Diagnostic-Code":    "smtp; 550 5.1.1 The email account that you tried to reach does not exist",
	})
	if got := r.field(rcpt, "Remote-MTA"); !strings.HasPrefix(got, "dns; mx.dest.test") {
		t.Errorf("Remote-MTA = %q, want mx.dest.test", got)
	}
	if got := r.field(r.Status[0], "Received-From-MTA"); got != "dns; mail.sender.test (192.0.2.7)" {
		t.Errorf("Received-From-MTA = %q", got)
	}
	waitQueueEmpty(t, e)
	if n := len(mx.deliveries()); n != 1 {
		t.Errorf("the sender's MX received %d messages, want the one DSN", n)
	}
	if !strings.Contains(e.logs.String(), `msg="DSN queued" id=`+m.ID) {
		t.Error(`the log has no "DSN queued" for the message`)
	}
}

// A message the destination keeps deferring brings its sender a delay
// DSN after delay_warning, then a failure DSN when it expires.
func TestDSNOnDelayAndExpiry(t *testing.T) {
	e := startEnv(t, envOptions{sections: `
[queue]
max_age = "3s"
delay_warning = "1s"
min_backoff = "500ms"
max_backoff = "500ms"
`})
	mx := startSenderMX(t, e)
	if err := e.gw.Queue().Enqueue(context.Background(), queuedForward("later@dest.test")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two DSNs at the sender's MX", func() bool { return len(mx.deliveries()) >= 2 })
	got := mx.deliveries()
	delay, failure := receivedDSN(t, e, got[0]), receivedDSN(t, e, got[1])
	for _, c := range []struct {
		r                       dsnReport
		subject, action, status string
	}{
		{delay, "Delayed Mail (still being retried)", "delayed", "4.2.1"},
		{failure, "Undelivered Mail Returned to Sender", "failed", "5.4.7"},
	} {
		if s := c.r.field(c.r.Header, "Subject"); s != c.subject {
			t.Errorf("Subject %q, want %q", s, c.subject)
		}
		rcpt := c.r.Status[1]
		if a, s := c.r.field(rcpt, "Action"), c.r.field(rcpt, "Status"); a != c.action || s != c.status {
			t.Errorf("%s: Action %q, Status %q, want %s, %s", c.subject, a, s, c.action, c.status)
		}
		if d := c.r.field(rcpt, "Diagnostic-Code"); d != "smtp; 451 4.2.1 Mailbox temporarily unavailable, try again later" {
			t.Errorf("%s: Diagnostic-Code %q, want the destination's last reply", c.subject, d)
		}
	}
	if w := delay.field(delay.Status[1], "Will-Retry-Until"); w == "" {
		t.Error("the delay DSN has no Will-Retry-Until")
	}
	waitQueueEmpty(t, e)
	time.Sleep(100 * time.Millisecond)
	if n := len(mx.deliveries()); n != 2 {
		t.Errorf("the sender's MX received %d messages, want the two DSNs", n)
	}
}

// With owner_notices, the destination mailbox of a recipient refused for
// good gets a notice besides the sender's DSN.
func TestOwnerNoticeEndToEnd(t *testing.T) {
	e := startEnv(t, envOptions{sections: "[queue]\nowner_notices = true\n"})
	mx := startSenderMX(t, e)
	var mu sync.Mutex
	first := true
	e.dest.setFaults(func() fault { // the forward is refused, the notice then accepted
		mu.Lock()
		defer mu.Unlock()
		if first {
			first = false
			return rcptReject
		}
		return noFault
	})
	if err := e.gw.Queue().Enqueue(context.Background(), queuedForward("me@dest.test")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the DSN and the notice", func() bool { return len(mx.deliveries()) > 0 && len(e.dest.deliveries()) > 0 })
	receivedDSN(t, e, mx.deliveries()[0])
	n := e.dest.deliveries()[0]
	if n.from != "" || strings.Join(n.to, ",") != "me@dest.test" {
		t.Errorf("the destination received from <%s> to %v, want a notice from <> to me@dest.test", n.from, n.to)
	}
	signedByUs(t, e, n.data)
	want := "Mail from alice@sender.test to info@ours.test could not be delivered: 550 5.1.1 Fault: no such mailbox"
	if !strings.Contains(string(n.data), want) || !strings.Contains(string(n.data), "Subject: Undelivered mail for info@ours.test") {
		t.Errorf("the notice does not say %q:\n%s", want, n.data)
	}
}
