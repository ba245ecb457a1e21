package dsn

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// A refusal gives the sender a signed multipart/report: the explanation,
// the delivery status with the destination's reply, and the header of
// the message as it was queued.
func TestFailedDSN(t *testing.T) {
	e := newTestEnv(t, nil)
	m := forwarded()
	m.Recipients = append(m.Recipients, queue.Recipient{Orig: "sales@ours.test", To: "carol@dest.test",
		Reply: "550 mailbox unavailable", Remote: "mx.dest.test"})
	if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	got := e.q.queued()
	if len(got) != 1 {
		t.Fatalf("%d messages queued, want 1 DSN", len(got))
	}
	d := got[0]
	if d.Kind != queue.DSN || d.From != "" || d.Sender != "" || d.MayBounce || d.UTF8 ||
		len(d.Recipients) != 1 || d.Recipients[0].To != "alice@sender.test" {
		t.Errorf("queued %+v, want a DSN from <> to alice@sender.test that may not bounce", d)
	}
	e.verified(t, d.Data)

	p := parse(t, d.Data)
	if p.Type != "multipart/report" || p.ReportType != "delivery-status" {
		t.Errorf("Content-Type %s; report-type=%s, want multipart/report; report-type=delivery-status", p.Type, p.ReportType)
	}
	wantFields(t, "header", p.Header, map[string]string{
		"From":           "Mail Delivery System <MAILER-DAEMON@ours.test>",
		"To":             "<alice@sender.test>",
		"Subject":        "Undelivered Mail Returned to Sender",
		"Date":           "Mon, 02 Mar 2026 10:00:00 +0000",
		"Auto-Submitted": "auto-replied",
		"MIME-Version":   "1.0",
	})
	if id := field(p.Header, "Message-ID"); !strings.HasSuffix(id, "@mx.ours.test>") {
		t.Errorf("Message-ID %q, want one of mx.ours.test", id)
	}
	if strings.Join(p.Parts, " ") != "text/plain message/delivery-status text/rfc822-headers" {
		t.Errorf("parts %v, want text/plain, message/delivery-status, text/rfc822-headers", p.Parts)
	}
	if strings.Join(p.Encodings, " ") != "7bit 7bit 7bit" {
		t.Errorf("parts' encodings %v, want 7bit", p.Encodings)
	}
	for _, s := range []string{"<info@ours.test> (forwarded to <bob@dest.test>)",
		"mx.dest.test[192.0.2.25]:25 said: 550 5.1.1 <bob@dest.test>: Recipient address rejected: User unknown",
		"<sales@ours.test> (forwarded to <carol@dest.test>)"} {
		if !strings.Contains(p.Text, s) {
			t.Errorf("the explanation lacks %q:\n%s", s, p.Text)
		}
	}
	if len(p.Status) != 3 {
		t.Fatalf("%d delivery-status blocks, want the per-message one and two recipients: %v", len(p.Status), p.Status)
	}
	wantFields(t, "per-message fields", p.Status[0], map[string]string{
		"Reporting-MTA":     "dns; mx.ours.test",
		"Received-From-MTA": "dns; mail.sender.test (192.0.2.7)",
		"Arrival-Date":      "Mon, 02 Mar 2026 09:00:00 +0000",
	})
	wantFields(t, "first recipient", p.Status[1], map[string]string{
		"Original-Recipient": "rfc822;info@ours.test",
		"Final-Recipient":    "rfc822;bob@dest.test",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-MTA":         "dns; mx.dest.test",
		"Diagnostic-Code":    "smtp; 550 5.1.1 <bob@dest.test>: Recipient address rejected: User unknown",
		"Last-Attempt-Date":  "Mon, 02 Mar 2026 10:00:00 +0000",
		"Will-Retry-Until":   "",
	})
	// A reply without an enhanced code gives its class's.
	wantFields(t, "second recipient", p.Status[2], map[string]string{
		"Final-Recipient": "rfc822;carol@dest.test",
		"Status":          "5.0.0",
		"Diagnostic-Code": "smtp; 550 mailbox unavailable",
	})
	wantFields(t, "original header", p.Original, map[string]string{
		"Subject":    "The quarterly figures",
		"Message-ID": "<figures-1@sender.test>",
		"From":       "Alice <alice@sender.test>",
	})
	if field(p.Original, "Received") == "" {
		t.Error("the original header lacks our Received field")
	}
	if e.counts.get("failure/queued") != 1 {
		t.Errorf("counts %v, want failure/queued 1", e.counts.n)
	}
}

// Expiry (the last reply was a 4xx, or no reply at all) is 5.4.7, and
// the explanation says how long it was tried.
func TestExpiredDSN(t *testing.T) {
	e := newTestEnv(t, nil)
	m := forwarded()
	m.Recipients[0].Reply = "451 4.3.0 try again later"
	m.Recipients = append(m.Recipients, queue.Recipient{Orig: "sales@ours.test", To: "carol@dest.test",
		Reply: "dial tcp 192.0.2.9:25: connection refused"})
	if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	p := parse(t, e.q.queued()[0].Data)
	wantFields(t, "first recipient", p.Status[1], map[string]string{
		"Action":          "failed",
		"Status":          "5.4.7",
		"Diagnostic-Code": "smtp; 451 4.3.0 try again later",
	})
	wantFields(t, "second recipient", p.Status[2], map[string]string{
		"Status":          "5.4.7",
		"Remote-MTA":      "",
		"Diagnostic-Code": "x-sluice; dial tcp 192.0.2.9:25: connection refused",
	})
	if !strings.Contains(p.Text, "not delivered within 5 days; the last attempt failed: 451 4.3.0 try again later") {
		t.Errorf("the explanation does not say it expired:\n%s", p.Text)
	}

	// The queue marks an expired recipient with its own words, and keeps
	// the last reply in LastError: the DSN gives the reply.
	m = forwarded()
	m.LastError = "451 4.3.0 try again later"
	m.Recipients[0].Reply = "expired: not delivered in 120h0m0s; last error: 451 4.3.0 try again later"
	if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	p = parse(t, e.q.queued()[1].Data)
	wantFields(t, "expired by the queue", p.Status[1], map[string]string{
		"Status":          "5.4.7",
		"Diagnostic-Code": "smtp; 451 4.3.0 try again later",
	})
	if !strings.Contains(p.Text, "not delivered within 5 days; the last attempt failed: 451 4.3.0 try again later") {
		t.Errorf("the explanation does not give the last reply:\n%s", p.Text)
	}
}

// A delay DSN says delayed, with the 4xx reply's code and until when the
// queue keeps trying.
func TestDelayDSN(t *testing.T) {
	e := newTestEnv(t, nil)
	m := forwarded()
	m.Recipients[0].Reply = "452 4.2.2 mailbox full"
	m.Recipients = append(m.Recipients, queue.Recipient{Orig: "sales@ours.test", To: "carol@dest.test",
		Reply: "connection timed out"})
	if err := e.n.Delayed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	d := e.q.queued()[0]
	e.verified(t, d.Data)
	p := parse(t, d.Data)
	wantFields(t, "header", p.Header, map[string]string{"Subject": "Delayed Mail (still being retried)"})
	if p.ReportType != "delivery-status" || len(p.Status) != 3 {
		t.Fatalf("report-type %s with %d blocks, want delivery-status with 3", p.ReportType, len(p.Status))
	}
	wantFields(t, "first recipient", p.Status[1], map[string]string{
		"Action":           "delayed",
		"Status":           "4.2.2",
		"Diagnostic-Code":  "smtp; 452 4.2.2 mailbox full",
		"Will-Retry-Until": "Sat, 07 Mar 2026 09:00:00 +0000",
	})
	wantFields(t, "second recipient", p.Status[2], map[string]string{"Action": "delayed", "Status": "4.4.7"})
	if !strings.Contains(p.Text, "until Sat, 07 Mar 2026 09:00:00 +0000") {
		t.Errorf("the explanation does not say when it gives up:\n%s", p.Text)
	}
	if e.counts.get("delay/queued") != 1 {
		t.Errorf("counts %v, want delay/queued 1", e.counts.n)
	}
}

// No DSN to the null sender, to a sender neither SPF nor DMARC vouched
// for (backscatter), nor about our own mail; each is counted.
func TestNoDSN(t *testing.T) {
	for _, c := range []struct {
		name   string
		edit   func(*queue.Message)
		result string
	}{
		{"null sender", func(m *queue.Message) { m.Sender, m.From = "", "" }, SuppressedNullSender},
		{"not authenticated", func(m *queue.Message) { m.MayBounce = false }, SuppressedBackscatter},
		{"a DSN", func(m *queue.Message) { m.Kind = queue.DSN }, SuppressedNotForward},
		{"a notice", func(m *queue.Message) { m.Kind = queue.Notice }, SuppressedNotForward},
		{"a report", func(m *queue.Message) { m.Kind = queue.Report }, SuppressedNotForward},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			m := forwarded()
			c.edit(m)
			if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
				t.Fatal(err)
			}
			if err := e.n.Delayed(context.Background(), m, m.Recipients); err != nil {
				t.Fatal(err)
			}
			if got := e.q.queued(); len(got) != 0 {
				t.Errorf("%d messages queued, want none", len(got))
			}
			if e.counts.get("failure/"+c.result) != 1 || e.counts.get("delay/"+c.result) != 1 {
				t.Errorf("counts %v, want failure/%s and delay/%s 1", e.counts.n, c.result, c.result)
			}
		})
	}
}

// Our own mail refused or delayed is logged with its own kind (a delay
// DSN refused says kind=dsn), not the kind of the DSN it would have
// caused.
func TestNotForwardLogsItsKind(t *testing.T) {
	for _, k := range []queue.Kind{queue.DSN, queue.Notice, queue.Report} {
		t.Run(string(k), func(t *testing.T) {
			var buf bytes.Buffer
			e := newTestEnv(t, func(c *Config) { c.Log = slog.New(slog.NewTextHandler(&buf, nil)) })
			m := forwarded()
			m.Kind = k
			if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
				t.Fatal(err)
			}
			if err := e.n.Delayed(context.Background(), m, m.Recipients); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 2 {
				t.Fatalf("logged %q, want 2 lines", buf.String())
			}
			for _, l := range lines {
				if !strings.Contains(l, " kind="+string(k)+" ") || strings.Count(l, " kind=") != 1 {
					t.Errorf("logged %q, want kind=%s once", l, k)
				}
			}
		})
	}
}

// At most Limit DSNs an hour to one domain; other domains are not held
// back, and the next hour starts afresh.
func TestRateLimit(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Limit = 2 })
	send := func(sender string) {
		t.Helper()
		m := forwarded()
		m.Sender = sender
		if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
			t.Fatal(err)
		}
	}
	send("a@sender.test")
	send("b@Sender.TEST")
	send("c@sender.test") // the third this hour
	send("a@other.test")
	if n := len(e.q.queued()); n != 3 {
		t.Errorf("%d DSNs queued, want 3", n)
	}
	if e.counts.get("failure/suppressed_rate") != 1 {
		t.Errorf("counts %v, want failure/suppressed_rate 1", e.counts.n)
	}
	e.clock.Advance(59 * time.Minute)
	send("d@sender.test")
	if n := len(e.q.queued()); n != 3 {
		t.Errorf("%d DSNs queued within the hour, want still 3", n)
	}
	e.clock.Advance(time.Minute)
	send("e@sender.test")
	got := e.q.queued()
	if len(got) != 4 || got[3].Recipients[0].To != "e@sender.test" {
		t.Errorf("%d DSNs queued an hour later, want a 4th to e@sender.test", len(got))
	}
}

// An address that is not ASCII makes a global DSN (RFC 6533): UTF-8
// fields with the utf-8 address type, sent with SMTPUTF8; a header that
// is not ASCII comes back as message/global-headers.
func TestUTF8DSN(t *testing.T) {
	e := newTestEnv(t, nil)
	m := forwarded()
	m.UTF8 = true
	m.Sender = "piñata@piñata.example"
	m.Recipients[0].Orig = "josé@ours.test"
	m.Data = []byte(strings.Replace(original, "Subject: The quarterly figures", "Subject: Les chiffres du trimestre, été", 1))
	if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	d := e.q.queued()[0]
	if !d.UTF8 || d.Recipients[0].To != "piñata@piñata.example" {
		t.Errorf("queued UTF8=%v to %s, want SMTPUTF8 to piñata@piñata.example", d.UTF8, d.Recipients[0].To)
	}
	e.verified(t, d.Data)
	p := parse(t, d.Data)
	if strings.Join(p.Parts, " ") != "text/plain message/global-delivery-status message/global-headers" {
		t.Errorf("parts %v, want text/plain, message/global-delivery-status, message/global-headers", p.Parts)
	}
	if strings.Join(p.Encodings, " ") != "8bit 8bit 8bit" {
		t.Errorf("parts' encodings %v, want 8bit", p.Encodings)
	}
	wantFields(t, "header", p.Header, map[string]string{"To": "<piñata@piñata.example>"})
	wantFields(t, "recipient", p.Status[1], map[string]string{
		"Original-Recipient": "utf-8;josé@ours.test",
		"Final-Recipient":    "rfc822;bob@dest.test",
		"Status":             "5.1.1",
	})
	wantFields(t, "original header", p.Original, map[string]string{"Subject": "Les chiffres du trimestre, été"})
	if !strings.Contains(p.Text, "<josé@ours.test>") {
		t.Errorf("the explanation lacks <josé@ours.test>:\n%s", p.Text)
	}
}

// With owner notices on, each failed recipient's mailbox hears of it,
// whether or not the sender could be told; off, it does not.
func TestOwnerNotices(t *testing.T) {
	off := newTestEnv(t, nil)
	m := forwarded()
	if err := off.n.Failed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	if got := off.q.queued(); len(got) != 1 || got[0].Kind != queue.DSN {
		t.Errorf("owner notices off: %d queued, want the DSN only", len(got))
	}

	e := newTestEnv(t, func(c *Config) { c.OwnerNotices = true })
	m = forwarded()
	m.MayBounce = false
	if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	got := e.q.queued()
	if len(got) != 1 {
		t.Fatalf("%d queued, want one notice (and no DSN to an unauthenticated sender)", len(got))
	}
	d := got[0]
	if d.Kind != queue.Notice || d.From != "" || d.MayBounce || d.Recipients[0].To != "bob@dest.test" {
		t.Errorf("queued %+v, want a notice from <> to bob@dest.test", d)
	}
	e.verified(t, d.Data)
	p := parse(t, d.Data)
	wantFields(t, "notice", p.Header, map[string]string{
		"From":           "Mail Delivery System <MAILER-DAEMON@ours.test>",
		"To":             "<bob@dest.test>",
		"Subject":        "Undelivered mail for info@ours.test",
		"Auto-Submitted": "auto-generated",
	})
	want := "Mail from alice@sender.test to info@ours.test could not be delivered: " +
		"550 5.1.1 <bob@dest.test>: Recipient address rejected: User unknown"
	if p.Type != "text/plain" || !strings.HasPrefix(p.Text, want) {
		t.Errorf("notice %s:\n%s\nwant text/plain starting %q", p.Type, p.Text, want)
	}
	if e.counts.get("notice/queued") != 1 || e.counts.get("failure/suppressed_backscatter") != 1 {
		t.Errorf("counts %v, want notice/queued and failure/suppressed_backscatter 1", e.counts.n)
	}
	// Delays are not the owner's business.
	if err := e.n.Delayed(context.Background(), forwarded(), forwarded().Recipients); err != nil {
		t.Fatal(err)
	}
	if got := e.q.queued(); len(got) != 2 || got[1].Kind != queue.DSN {
		t.Errorf("after a delay: %d queued, want the delay DSN alone added", len(got))
	}
}

// A failure to queue is the Notifier's error, so the queue asks again.
func TestEnqueueFails(t *testing.T) {
	e := newTestEnv(t, nil)
	e.q.err = errors.New("disk full")
	m := forwarded()
	if err := e.n.Failed(context.Background(), m, m.Recipients); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Failed = %v, want the queue's error", err)
	}
	if e.counts.get("failure/failed") != 1 {
		t.Errorf("counts %v, want failure/failed 1", e.counts.n)
	}
}

// Each DSN is signed with the signer in use when it is made, and From
// its domain; without one it goes unsigned, From Config.Domain.
func TestSignerFollowsGenerations(t *testing.T) {
	var current *dkim.Signer
	e := newTestEnv(t, func(c *Config) { c.Signer = func() *dkim.Signer { return current } })
	m := forwarded()
	if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	d := e.q.queued()[0]
	if strings.Contains(string(d.Data), "DKIM-Signature") ||
		!strings.Contains(string(d.Data), "From: Mail Delivery System <MAILER-DAEMON@unused.test>") {
		t.Errorf("without a signer: want unsigned, From unused.test:\n%s", d.Data)
	}
	key, err := dkim.LoadKey("../dkim/testdata/rsa2048-pkcs8.pem")
	if err != nil {
		t.Fatal(err)
	}
	current, err = dkim.NewSigner(dkim.SignerConfig{Domain: "new.test", Keys: []dkim.Key{{Selector: "s2", Signer: key}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	d = e.q.queued()[1]
	if !strings.HasPrefix(string(d.Data), "DKIM-Signature:") || !strings.Contains(string(d.Data), "d=new.test") ||
		!strings.Contains(string(d.Data), "From: Mail Delivery System <MAILER-DAEMON@new.test>") {
		t.Errorf("with the new signer: want signed d=new.test, From new.test:\n%.600s", d.Data)
	}
}

// The original header is cut at a field boundary past MaxHeader.
func TestHeaderBounded(t *testing.T) {
	e := newTestEnv(t, nil)
	m := forwarded()
	big := strings.Repeat("X-Filler: "+strings.Repeat("x", 90)+"\r\n", 1000) // about 100 KiB
	m.Data = []byte(big + original)
	if err := e.n.Failed(context.Background(), m, m.Recipients); err != nil {
		t.Fatal(err)
	}
	d := e.q.queued()[0]
	if len(d.Data) > MaxHeader+8<<10 {
		t.Errorf("DSN of %d bytes, want the header bounded near %d", len(d.Data), MaxHeader)
	}
	p := parse(t, d.Data)
	if n := len(p.Original); n != MaxHeader/len("X-Filler: "+strings.Repeat("x", 90)+"\r\n") {
		t.Errorf("%d fields of the original header kept, want the whole ones that fit", n)
	}
}
