package gateway_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/srs"
)

// figuresMessage is a message whose DSN the tests recognise by its
// Message-ID.
const figuresMessage = "From: Alice <alice@example.org>\r\nTo: team@ours.test\r\nSubject: The quarterly figures\r\n" +
	"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <figures-2@example.org>\r\n\r\nThe figures.\r\n"

// authenticateExampleOrg lets SPF pass for example.org from loopback, so
// that its senders may be told of a failure; its MX is e.dest, where
// their DSNs arrive.
func authenticateExampleOrg(t *testing.T, e *env) {
	t.Helper()
	e.addRecords(t, "example.org. 300 IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n")
}

// dsns are the deliveries from the null sender to alice@example.org.
func dsns(d *destination) []delivery {
	var out []delivery
	for _, m := range d.deliveries() {
		if m.from == "" && strings.Join(m.to, ",") == "alice@example.org" {
			out = append(out, m)
		}
	}
	return out
}

// Through a real session, in both modes: an address forwards to two
// domains, and the queued copy's destination refuses it for good. The
// sender, as it gave itself (not the SRS address), gets a DSN naming the
// address it wrote and the destination's reply, signed by us.
func TestQueuedCopyRefusedBringsDSN(t *testing.T) {
	for _, mode := range []string{"first_in_session", "queue_all"} {
		t.Run(mode, func(t *testing.T) {
			e := startEnv(t, envOptions{dest2: true, sections: "[queue]\nmultiple_destinations = \"" + mode + "\"\n"})
			authenticateExampleOrg(t, e)
			e.dest2.setFaults(func() fault { return rcptReject })
			resp, err := send(t, e, "alice@example.org", figuresMessage, "team@ours.test")
			if err != nil {
				t.Fatal(err)
			}
			want := "2.0.0 OK: queued as DEST1" // the in-session destination's reply
			if mode == "queue_all" {
				want = "2.0.0 OK: queued as " // the queue's
			}
			if !strings.HasPrefix(resp.StatusText, want) {
				t.Errorf("DATA reply %q, want %q...", resp.StatusText, want)
			}
			waitFor(t, "the DSN at example.org's MX", func() bool { return len(dsns(e.dest)) > 0 })
			r := receivedDSNFor(t, e, dsns(e.dest)[0], "alice@example.org", "<figures-2@example.org>")
			if got := r.field(r.Header, "From"); got != "Mail Delivery System <MAILER-DAEMON@ours.test>" {
				t.Errorf("From %q, want MAILER-DAEMON at our DKIM domain", got)
			}
			if got := r.field(r.Status[0], "Reporting-MTA"); !strings.HasPrefix(got, "dns; ") {
				t.Errorf("Reporting-MTA %q", got)
			}
			if got := r.field(r.Status[0], "Received-From-MTA"); got != "dns; sender.example.org (127.0.0.1)" {
				t.Errorf("Received-From-MTA %q, want the client's HELO and address", got)
			}
			rcpt := r.Status[1]
			r.wantFields(t, "DSN", rcpt, map[string]string{
				"Original-Recipient": "rfc822;team@ours.test",
				"Final-Recipient":    "rfc822;you@dest2.test",
				"Action":             "failed",
				"Status":             "5.1.1",
				"Diagnostic-Code":    "smtp; 550 5.1.1 Fault: no such mailbox",
			})
			if got := r.field(rcpt, "Remote-MTA"); !strings.HasPrefix(got, "dns; mx.dest2.test") {
				t.Errorf("Remote-MTA %q, want mx.dest2.test", got)
			}
			// The copy for dest.test arrived (in session, or queued), once.
			waitQueueEmpty(t, e)
			var copies int
			for _, d := range e.dest.deliveries() {
				if d.from != "" && strings.Join(d.to, ",") == "me@dest.test" {
					copies++
				}
			}
			if copies != 1 || len(dsns(e.dest)) != 1 {
				t.Errorf("dest.test has %d copies and %d DSNs, want one of each", copies, len(dsns(e.dest)))
			}
			if m := scrape(t, e); m[`sluice_dsn_total{kind="failure",result="queued"}`] != 1 {
				t.Errorf("sluice_dsn_total failure queued = %v, want 1", m[`sluice_dsn_total{kind="failure",result="queued"}`])
			}
		})
	}
}

// No DSN goes about a queued copy whose sender was the null sender (a
// bounce, here one to our SRS address, forwarded to the sender it was for),
// nor whose sender no one authenticated: both are only counted. With
// owner_notices, the owner of team@ours.test hears of its lost mail, but
// the address a bounce went back to is no owner of ours: it gets no notice.
func TestQueuedCopyRefusedWithoutDSN(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true, sections: "[queue]\nowner_notices = true\n"})
	e.dest2.setFaults(func() fault { return rcptReject })
	rw, _ := srs.New(srs.Config{Domain: "ours.test", Secrets: []string{e.secret}})
	bounceTo, err := rw.Forward("bob@dest2.test")
	if err != nil {
		t.Fatal(err)
	}
	// A bounce: in session to me@dest.test; the bounce to the SRS address
	// goes to bob@dest2.test, queued, and refused there.
	if _, err := send(t, e, "", testMessage, "info@ours.test", bounceTo); err != nil {
		t.Fatal(err)
	}
	// alice@example.org: no SPF, no DMARC.
	if _, err := send(t, e, "alice@example.org", testMessage, "team@ours.test"); err != nil {
		t.Fatal(err)
	}
	waitQueueEmpty(t, e)
	m := scrape(t, e)
	if m[`sluice_dsn_total{kind="failure",result="suppressed_null_sender"}`] != 1 ||
		m[`sluice_dsn_total{kind="failure",result="suppressed_backscatter"}`] != 1 ||
		m[`sluice_dsn_total{kind="failure",result="queued"}`] != 0 ||
		m[`sluice_dsn_total{kind="notice",result="queued"}`] != 1 {
		for _, k := range []string{"failure", "notice"} {
			for _, r := range []string{"queued", "suppressed_null_sender", "suppressed_backscatter"} {
				t.Logf("sluice_dsn_total{%s, %s} = %v", k, r, m[`sluice_dsn_total{kind="`+k+`",result="`+r+`"}`])
			}
		}
		t.Error("want the two failures suppressed, one for the null sender, one for backscatter, and one notice, for you@dest2.test")
	}
	for _, d := range append(e.dest.deliveries(), e.dest2.deliveries()...) {
		if d.from == "" && strings.Join(d.to, ",") != "me@dest.test" && strings.Join(d.to, ",") != "you@dest2.test" { // but the bounce itself and the notice
			t.Errorf("a DSN or notice was sent: %+v", d)
		}
	}
}

// A queued copy deferred (4xx) and then accepted is delivered once, and
// its sender hears nothing.
func TestQueuedCopyDeferredThenDelivered(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true, sections: "[queue]\nmin_backoff = \"100ms\"\nmax_backoff = \"100ms\"\n"})
	authenticateExampleOrg(t, e)
	n := 0
	e.dest2.setFaults(func() fault {
		n++ // the destination's sessions are one at a time here
		if n == 1 {
			return rcptTempfail
		}
		return noFault
	})
	if _, err := send(t, e, "alice@example.org", testMessage, "team@ours.test"); err != nil {
		t.Fatal(err)
	}
	waitQueueEmpty(t, e)
	if got := e.dest2.deliveries(); len(got) != 1 || strings.Join(got[0].to, ",") != "you@dest2.test" {
		t.Errorf("dest2.test received %+v, want one copy for you@", got)
	}
	if n := len(dsns(e.dest)); n != 0 {
		t.Errorf("%d DSNs, want none", n)
	}
	m := scrape(t, e)
	for _, k := range []string{"failure", "delay"} {
		for _, r := range []string{"queued", "suppressed_backscatter"} {
			if v := m[`sluice_dsn_total{kind="`+k+`",result="`+r+`"}`]; v != 0 {
				t.Errorf("sluice_dsn_total %s %s = %v, want 0", k, r, v)
			}
		}
	}
}

// A queued copy its destination keeps deferring: after delay_warning the
// sender gets a delay DSN, and at max_age a failure DSN (5.4.7), each
// with the destination's last reply.
func TestQueuedCopyExpiresWithDSNs(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true, sections: `
[queue]
max_age = "3s"
delay_warning = "1s"
min_backoff = "500ms"
max_backoff = "500ms"
`})
	authenticateExampleOrg(t, e)
	e.dest2.setFaults(func() fault { return rcptTempfail })
	if _, err := send(t, e, "alice@example.org", figuresMessage, "team@ours.test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two DSNs", func() bool { return len(dsns(e.dest)) >= 2 })
	got := dsns(e.dest)
	delay := receivedDSNFor(t, e, got[0], "alice@example.org", "<figures-2@example.org>")
	failure := receivedDSNFor(t, e, got[1], "alice@example.org", "<figures-2@example.org>")
	for _, c := range []struct {
		r              dsnReport
		action, status string
	}{{delay, "delayed", "4.3.0"}, {failure, "failed", "5.4.7"}} {
		c.r.wantFields(t, c.action+" DSN", c.r.Status[1], map[string]string{
			"Original-Recipient": "rfc822;team@ours.test",
			"Final-Recipient":    "rfc822;you@dest2.test",
			"Action":             c.action,
			"Status":             c.status,
			"Diagnostic-Code":    "smtp; 451 4.3.0 Fault: try again later",
		})
	}
	waitQueueEmpty(t, e)
	if n := len(dsns(e.dest)); n != 2 {
		t.Errorf("%d DSNs, want the two", n)
	}
}

// queue.dsn_limit counts the DSNs to one domain: over it, a failure is
// logged and counted, not sent.
func TestQueuedCopyDSNRateLimit(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true, sections: "[queue]\ndsn_limit = 1\n"})
	authenticateExampleOrg(t, e)
	e.dest2.setFaults(func() fault { return rcptReject })
	for range 2 {
		if _, err := send(t, e, "alice@example.org", figuresMessage, "team@ours.test"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both failures told or not", func() bool {
		m := scrape(t, e)
		return m[`sluice_dsn_total{kind="failure",result="queued"}`]+m[`sluice_dsn_total{kind="failure",result="suppressed_rate"}`] == 2
	})
	waitQueueEmpty(t, e)
	m := scrape(t, e)
	if q, r := m[`sluice_dsn_total{kind="failure",result="queued"}`], m[`sluice_dsn_total{kind="failure",result="suppressed_rate"}`]; q != 1 || r != 1 {
		t.Errorf("failure DSNs: %v queued, %v suppressed_rate; want 1 and 1", q, r)
	}
	if n := len(dsns(e.dest)); n != 1 {
		t.Errorf("%d DSNs, want one", n)
	}
	if !strings.Contains(e.logs.String(), "no DSN: queue.dsn_limit reached") {
		t.Error("the log does not say the DSN was not sent for the limit")
	}
}

// With owner_notices, the mailbox a queued copy was for hears that it
// was refused, besides the sender's DSN.
func TestQueuedCopyOwnerNotice(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true, sections: "[queue]\nowner_notices = true\n"})
	authenticateExampleOrg(t, e)
	var mu sync.Mutex
	first := true
	e.dest2.setFaults(func() fault { // the copy is refused, the notice accepted
		mu.Lock()
		defer mu.Unlock()
		if first {
			first = false
			return rcptReject
		}
		return noFault
	})
	if _, err := send(t, e, "alice@example.org", figuresMessage, "team@ours.test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the DSN and the notice", func() bool { return len(dsns(e.dest)) > 0 && len(e.dest2.deliveries()) > 0 })
	receivedDSNFor(t, e, dsns(e.dest)[0], "alice@example.org", "<figures-2@example.org>")
	n := e.dest2.deliveries()[0]
	if n.from != "" || strings.Join(n.to, ",") != "you@dest2.test" {
		t.Errorf("dest2.test received from <%s> to %v, want a notice from <> to you@dest2.test", n.from, n.to)
	}
	signedByUs(t, e, n.data)
	want := "Mail from alice@example.org to team@ours.test could not be delivered: 550 5.1.1 Fault: no such mailbox"
	if !strings.Contains(string(n.data), want) {
		t.Errorf("the notice does not say %q:\n%s", want, n.data)
	}
}
