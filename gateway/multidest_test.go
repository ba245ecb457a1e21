package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// waitDeliveries waits until d has received n messages and returns them.
func waitDeliveries(t *testing.T, d *destination, n int) []delivery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := d.deliveries()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the destination received %d messages, want %d", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// send sends msg from sender to the recipients in one transaction and
// returns DATA's reply.
func send(t *testing.T, e *env, sender, msg string, rcpts ...string) (*smtp.DataResponse, error) {
	t.Helper()
	c := e.client(t)
	if err := c.Mail(sender, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	return sendData(t, c, msg)
}

// An address with destinations in two domains: the first is relayed in
// session, and its reply is the sender's; the second arrives through the
// queue, the very message the first got, from the same SRS sender.
func TestSeveralDestinationsFirstInSession(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true})
	resp, err := send(t, e, "alice@example.org", testMessage, "team@ours.test")
	if err != nil {
		t.Fatal(err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || strings.Join(got[0].to, ",") != "me@dest.test" {
		t.Fatalf("dest.test received %+v in session, want one message for me@", got)
	}
	if !strings.Contains(resp.StatusText, "queued as DEST1") {
		t.Errorf("DATA reply %q, want the in-session destination's", resp.StatusText)
	}
	queued := waitDeliveries(t, e.dest2, 1)
	if len(queued) != 1 || strings.Join(queued[0].to, ",") != "you@dest2.test" || queued[0].from != got[0].from ||
		!bytes.Equal(queued[0].data, got[0].data) {
		t.Errorf("dest2.test received %+v through the queue, want what dest.test got, for you@", queued)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "outcome=forwarded") || !strings.Contains(logs, "queued=team@ours.test->you@dest2.test queue_ids=") {
		t.Errorf("the log does not say what was queued:\n%s", logs)
	}
	if m := scrape(t, e); m[`sluice_recipients_total{decided_by="destination",outcome="forwarded"}`] != 1 {
		t.Errorf("recipients forwarded: %v, want 1", m[`sluice_recipients_total{decided_by="destination",outcome="forwarded"}`])
	}
	// One domain: both in session, one transaction, nothing queued.
	if _, err := send(t, e, "alice@example.org", testMessage, "same@ours.test"); err != nil {
		t.Fatal(err)
	}
	got = e.dest.deliveries()
	if len(got) != 2 || strings.Join(got[1].to, ",") != "me@dest.test,you@dest.test" {
		t.Errorf("dest.test received %+v, want one message for me@ and you@", got)
	}
}

// A queued copy carries the sender as given, for its DSN, which may go
// there only if SPF or DMARC passed for it.
func TestQueuedCopyMayBounce(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true})
	e.dest2.setFaults(func() fault { return rcptTempfail }) // keep it queued
	for _, c := range []struct {
		sender string
		bounce bool
	}{
		{"news@lists.example.net", true}, // SPF passes from loopback
		{"alice@example.org", false},     // no SPF, no DMARC: anyone could be alice
	} {
		if _, err := send(t, e, c.sender, testMessage, "team@ours.test"); err != nil {
			t.Fatal(err)
		}
		m := queuedFrom(t, e, c.sender)
		if m.MayBounce != c.bounce || m.Kind != queue.Forward || !strings.HasPrefix(m.From, "SRS0=") ||
			len(m.Recipients) != 1 || m.Recipients[0].Orig != "team@ours.test" || m.Recipients[0].To != "you@dest2.test" ||
			m.Helo != "sender.example.org" || m.ClientIP != "127.0.0.1" {
			t.Errorf("%s: queued %+v, want MayBounce %v", c.sender, m, c.bounce)
		}
	}
}

// queuedFrom is the message in e's queue from sender, with its data;
// the test fails without one.
func queuedFrom(t *testing.T, e *env, sender string) *queue.Message {
	t.Helper()
	list, _ := e.gw.Queue().List(context.Background())
	for _, s := range list {
		if s.Sender == sender {
			if m, err := e.gw.Queue().Get(context.Background(), s.ID); err == nil {
				return m
			}
		}
	}
	t.Fatalf("%s: nothing queued: %+v", sender, list)
	return nil
}

// queue_all: with destinations in two domains nothing is relayed in
// session; the 250 is the queue's, and both arrive through it.
func TestSeveralDestinationsQueueAll(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true, sections: "[queue]\nmultiple_destinations = \"queue_all\"\n"})
	resp, err := send(t, e, "alice@example.org", testMessage, "team@ours.test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.StatusText, "2.0.0 OK: queued as ") || strings.Count(resp.StatusText, ",") != 1 {
		t.Errorf("DATA reply %q, want the queue's, naming two messages", resp.StatusText)
	}
	a, b := waitDeliveries(t, e.dest, 1), waitDeliveries(t, e.dest2, 1)
	if a[0].to[0] != "me@dest.test" || b[0].to[0] != "you@dest2.test" || !bytes.Equal(a[0].data, b[0].data) {
		t.Errorf("dest.test received %+v, dest2.test %+v", a, b)
	}
	if !strings.Contains(e.logs.String(), "outcome=queued") {
		t.Errorf("the log line does not say queued:\n%s", e.logs.String())
	}
	if m := scrape(t, e); m[`sluice_recipients_total{decided_by="queue",outcome="queued"}`] != 1 {
		t.Errorf("recipients queued: %v, want 1", m[`sluice_recipients_total{decided_by="queue",outcome="queued"}`])
	}
}

// queue_all: two recipients that go to one mailbox (team@ and same@ both
// to me@dest.test) are queued as two, each for its DSN, and the
// mailbox gets one copy, with one RCPT TO.
func TestQueuedSharedMailboxOneCopy(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true, sections: "[queue]\nmultiple_destinations = \"queue_all\"\n"})
	if _, err := send(t, e, "alice@example.org", testMessage, "team@ours.test", "same@ours.test"); err != nil {
		t.Fatal(err)
	}
	waitQueueEmpty(t, e)
	for _, c := range []struct {
		d    *destination
		want string
	}{{e.dest, "me@dest.test,you@dest.test"}, {e.dest2, "you@dest2.test"}} {
		var got []string
		for _, d := range c.d.deliveries() {
			got = append(got, strings.Join(d.to, ","))
		}
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("copies received for %q, want one for %s, each named once", got, c.want)
		}
	}
}

// A refusal in session is the sender's, and nothing is queued.
func TestSeveralDestinationsRefusedInSession(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "RCPT team-bad@", c.Rcpt("team-bad@ours.test", nil), 550, smtp.EnhancedCode{5, 1, 1}, "does not exist")
	c.Reset()
	_, err := send(t, e, "alice@example.org", dataRejectMarker+"\r\n"+testMessage, "team@ours.test")
	wantReply(t, "DATA refused in session", err, 554, smtp.EnhancedCode{5, 7, 1}, "Message refused by destination policy")
	if list, _ := e.gw.Queue().List(context.Background()); len(list) != 0 {
		t.Errorf("queued %+v, want nothing", list)
	}
}

// A recipient with two destinations in one domain, the first accepting
// and the second refusing, is refused, and the first destination never
// gets the message for it: with no other recipient in the relay's
// transaction yet, it is closed. The next recipient starts afresh, here
// in session to example.org.
func TestSeveralDestinationsHalfRefusedInSession(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "RCPT pair-bad@", c.Rcpt("pair-bad@ours.test", nil), 550, smtp.EnhancedCode{5, 1, 1}, "does not exist")
	if err := c.Rcpt("elsewhere@ours.test", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sendData(t, c, testMessage); err != nil {
		t.Fatal(err)
	}
	if list, _ := e.gw.Queue().List(context.Background()); len(list) != 0 {
		t.Errorf("queued %+v, want nothing", list)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || strings.Join(got[0].to, ",") != "friend@example.org" {
		t.Errorf("the destination received %d messages, want one, for friend@example.org only", len(got))
		for _, d := range got {
			t.Logf("received for %v", d.to)
		}
	}
	if logs := e.logs.String(); !strings.Contains(logs, "forwards=elsewhere@ours.test->friend@example.org relay=") {
		t.Errorf("the log does not say the one forward:\n%s", logs)
	}
}

// DMARC vouches for the From domain, not for the envelope sender a DSN
// would go to: a message signed by its author's domain (DMARC passes by
// DKIM) from an envelope sender of another organisation, which SPF does
// not authenticate, may not bounce there, or anyone could aim our DSNs
// at anyone. From the author's own domain, it may.
func TestQueuedCopyMayBounceOnlyToAnAlignedSender(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true})
	txt, _ := dkim.TXTRecord(testKeys(t).list)
	e.addRecords(t, "_dmarc.signed.example. 300 IN TXT \"v=DMARC1; p=none\"\n"+
		fmt.Sprintf("s1._domainkey.signed.example. 300 IN TXT %s\n", splitTXT(txt)))
	e.dest2.setFaults(func() fault { return rcptTempfail }) // keep it queued
	for _, c := range []struct {
		sender string
		bounce bool
	}{
		{"victim@example.org", false},
		{"sam@signed.example", true},
		{"bounces@mail.signed.example", true}, // the same organisation
	} {
		if _, err := send(t, e, c.sender, signedBySam(t), "team@ours.test"); err != nil {
			t.Fatal(err)
		}
		m := queuedFrom(t, e, c.sender)
		if m.MayBounce != c.bounce {
			t.Errorf("%s: MayBounce %v, want %v", c.sender, m.MayBounce, c.bounce)
		}
	}
}

// A queue directory that cannot be written (a full or read-only disk, or
// here one taken away) makes the reply 451 4.3.0, never 250: nothing went
// to a destination, and the sender's retry is queued once it can be.
func TestQueueUnwritableIsATempfail(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true, sections: "[queue]\nmultiple_destinations = \"queue_all\"\n"})
	dir := filepath.Join(filepath.Dir(e.cfgPath), "data", "queue")
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := send(t, e, "alice@example.org", testMessage, "team@ours.test")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
		t.Fatalf("DATA with the queue unwritable: %v, want 451 4.3.0", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := send(t, e, "alice@example.org", testMessage, "team@ours.test"); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	a, b := waitDeliveries(t, e.dest, 1), waitDeliveries(t, e.dest2, 1)
	if len(a) != 1 || len(b) != 1 {
		t.Errorf("dest.test received %d, dest2.test %d; want the retry's copy each", len(a), len(b))
	}
}
