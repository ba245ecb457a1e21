package gateway_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// logLines returns the attributes of each line of slog's text output
// whose msg is msg.
func logLines(t *testing.T, logs, msg string) []map[string]string {
	t.Helper()
	var lines []map[string]string
	for _, line := range strings.Split(logs, "\n") {
		attrs := map[string]string{}
		for rest := line; rest != ""; {
			key, after, ok := strings.Cut(rest, "=")
			if !ok {
				break
			}
			var value string
			if strings.HasPrefix(after, `"`) {
				q, err := strconv.QuotedPrefix(after)
				if err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				value, _ = strconv.Unquote(q)
				after = after[len(q):]
			} else {
				value, after, _ = strings.Cut(after, " ")
			}
			attrs[key] = value
			rest = strings.TrimPrefix(after, " ")
		}
		if attrs["msg"] == msg {
			lines = append(lines, attrs)
		}
	}
	return lines
}

// txnLines returns the transaction lines whose sender is from, once there
// are n: a transaction that ends with QUIT is logged when the session
// ends, which may be just after the client has read the reply to QUIT.
func txnLines(t *testing.T, e *env, from string, n int) []map[string]string {
	t.Helper()
	var found []map[string]string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		found = found[:0]
		for _, l := range logLines(t, e.logs.String(), "message") {
			if l["from"] == from {
				found = append(found, l)
			}
		}
		if len(found) >= n || time.Now().After(deadline) {
			break
		}
	}
	if len(found) != n {
		t.Fatalf("%d transaction lines from %s, want %d", len(found), from, n)
	}
	return found
}

// txnLine is the one transaction line whose sender is from.
func txnLine(t *testing.T, e *env, from string) map[string]string {
	t.Helper()
	return txnLines(t, e, from, 1)[0]
}

// absent, as the value wantAttrs wants, means no such attribute.
const absent = "\x00absent"

// wantAttrs checks a log line's attributes.
func wantAttrs(t *testing.T, what string, line map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got, ok := line[k]
		switch {
		case v == absent && ok:
			t.Errorf("%s: %s=%q, want no %s", what, k, got, k)
		case v != absent && (!ok || got != v):
			t.Errorf("%s: %s=%q, want %q", what, k, got, v)
		}
	}
}

// Every transaction gets one line that says what became of each
// recipient, with the reply it got and who decided it, whether or not
// the client reached DATA; a message refused at DATA is not logged as
// forwarded; and sluice_recipients_total counts the same.
func TestEveryDecisionLogged(t *testing.T) {
	e := startEnv(t, envOptions{})
	before := scrape(t, e)
	for _, o := range []string{"forwarded", "rejected", "tempfailed", "dropped"} {
		for _, by := range []string{"host", "plugin", "destination"} {
			key := fmt.Sprintf(`sluice_recipients_total{decided_by=%q,outcome=%q}`, by, o)
			if v, ok := before[key]; !ok || v != 0 {
				t.Errorf("at start %s = %v (present: %v), want 0", key, v, ok)
			}
		}
	}

	// session sends MAIL FROM from, each recipient (checking its reply
	// code), and msg if it is not empty, and returns the DATA reply.
	session := func(from string, rcpts map[string]int, msg string) error {
		t.Helper()
		c := e.client(t)
		defer c.Quit()
		if err := c.Mail(from, nil); err != nil {
			return err
		}
		for rcpt, code := range rcpts {
			err := c.Rcpt(rcpt, nil)
			got := 250
			if e, ok := err.(*smtp.SMTPError); ok {
				got = e.Code
			}
			if got != code {
				t.Errorf("%s: RCPT %s: %v, want %d", from, rcpt, err, code)
			}
		}
		if msg == "" {
			return nil
		}
		_, err := sendData(t, c, msg)
		return err
	}

	session("relay@example.org", map[string]int{"someone@elsewhere.test": 550}, "")
	wantAttrs(t, "relay denied", txnLine(t, e, "relay@example.org"), map[string]string{
		"rcpts": "", "outcome": "none", "reply": absent, "forwards": absent, "relay": absent,
		"refused": "someone@elsewhere.test (host): 550 5.7.1 <someone@elsewhere.test>: relay access denied",
	})

	session("unrouted@example.org", map[string]int{"nobody@ours.test": 550}, "")
	wantAttrs(t, "unrouted", txnLine(t, e, "unrouted@example.org"), map[string]string{
		"outcome": "none", "refused": "nobody@ours.test (host): 550 5.1.1 <nobody@ours.test>: no such recipient here",
	})

	session("gone@example.org", map[string]int{"gone@ours.test": 550}, "")
	wantAttrs(t, "plugin rejected", txnLine(t, e, "gone@example.org"), map[string]string{
		"outcome": "none", "refused": "gone@ours.test (plugin:router): 550 5.1.1 Gone: this address was retired",
	})

	session("srs@example.org", map[string]int{"SRS0=abcd=ZZ=other.test=user@ours.test": 550}, "")
	wantAttrs(t, "bad SRS hash", txnLine(t, e, "srs@example.org"), map[string]string{
		"refused": "SRS0=abcd=ZZ=other.test=user@ours.test (host): 550 5.7.1 <SRS0=abcd=ZZ=other.test=user@ours.test>: invalid SRS address: bad hash",
	})

	// Two refusals by the destination: each has its own reply.
	session("dest@example.org", map[string]int{"bad@ours.test": 550}, "")
	wantAttrs(t, "destination refused", txnLine(t, e, "dest@example.org"), map[string]string{
		"refused": "bad@ours.test (destination): 550 5.1.1 The email account that you tried to reach does not exist",
	})
	session("later@example.org", map[string]int{"later@ours.test": 451}, "")
	wantAttrs(t, "destination deferred", txnLine(t, e, "later@example.org"), map[string]string{
		"refused": "later@ours.test (destination): 451 4.2.1 Mailbox temporarily unavailable, try again later",
	})

	// A message that left, one recipient refused beside it.
	if err := session("fwd@example.org", map[string]int{"info@ours.test": 250, "gone@ours.test": 550}, testMessage); err != nil {
		t.Fatalf("forwarded: %v", err)
	}
	line := txnLine(t, e, "fwd@example.org")
	wantAttrs(t, "forwarded", line, map[string]string{
		"rcpts": "info@ours.test", "outcome": "forwarded", "decided_by": "destination",
		"forwards": "info@ours.test->me@dest.test",
		"refused":  "gone@ours.test (plugin:router): 550 5.1.1 Gone: this address was retired",
	})
	if line["relay"] == "" {
		t.Error("forwarded: no relay")
	}
	if !strings.HasPrefix(line["reply"], "250 2.0.0 OK: queued as DEST") {
		t.Errorf("forwarded: reply=%q, want the destination's", line["reply"])
	}

	// A dropped message: 250 that does not say queued.
	c := e.client(t)
	if err := c.Mail("drop@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("drop@ours.test", nil); err != nil {
		t.Fatal(err)
	}
	resp, err := sendData(t, c, testMessage)
	if err != nil || resp.StatusText != "2.0.0 OK" {
		t.Errorf("dropped: %+v, %v; want 250 2.0.0 OK", resp, err)
	}
	c.Quit()
	wantAttrs(t, "dropped", txnLine(t, e, "drop@example.org"), map[string]string{
		"rcpts": "drop@ours.test", "discarded": "drop@ours.test", "outcome": "dropped",
		"reply": "250 2.0.0 OK", "decided_by": "plugin:router", "forwards": absent, "relay": absent,
	})

	// Refused at DATA, by a plugin and by the destination: not forwarded.
	err = session("bob@strict.example", map[string]int{"info@ours.test": 250}, "From: Bob <bob@strict.example>\r\nSubject: spoofed\r\n\r\nhello\r\n")
	wantReply(t, "DMARC reject", err, 550, smtp.EnhancedCode{5, 7, 1}, "DMARC policy is reject")
	wantAttrs(t, "rejected at DATA by a plugin", txnLine(t, e, "bob@strict.example"), map[string]string{
		"rcpts": "info@ours.test", "outcome": "rejected", "decided_by": "plugin:dmarc", "forwards": absent, "relay": absent,
	})
	err = session("data@example.org", map[string]int{"info@ours.test": 250}, dataRejectMarker+"\r\n"+testMessage)
	wantReply(t, "destination reject at DATA", err, 554, smtp.EnhancedCode{5, 7, 1}, "refused by destination policy")
	wantAttrs(t, "rejected at DATA by the destination", txnLine(t, e, "data@example.org"), map[string]string{
		"outcome": "rejected", "decided_by": "destination", "reply": "554 5.7.1 Message refused by destination policy",
		"forwards": absent, "relay": absent,
	})

	// A refused MAIL ends its transaction with a line of its own.
	c = e.client(t)
	wantReply(t, "non-ASCII sender", c.Mail("jösé@example.org", nil), 553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII")
	c.Quit()
	wantAttrs(t, "MAIL refused", txnLine(t, e, "jösé@example.org"), map[string]string{
		"outcome": "rejected", "reply": "553 5.6.7 Non-ASCII address without SMTPUTF8", "decided_by": "host",
	})

	// RSET after a refused recipient ends the transaction too; the next
	// one in the same session gets its own line.
	c = e.client(t)
	if err := c.Mail("rset@example.org", nil); err != nil {
		t.Fatal(err)
	}
	c.Rcpt("gone@ours.test", nil)
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("rset@example.org", nil); err != nil {
		t.Fatal(err)
	}
	c.Rcpt("nobody@ours.test", nil)
	c.Quit()
	var rset []string
	for _, l := range txnLines(t, e, "rset@example.org", 2) {
		rset = append(rset, l["refused"])
	}
	if len(rset) != 2 || !strings.HasPrefix(rset[0], "gone@ours.test") || !strings.HasPrefix(rset[1], "nobody@ours.test") {
		t.Errorf("RSET: lines refusing %q, want one for gone@, then one for nobody@", rset)
	}

	m := scrape(t, e)
	want := map[[2]string]float64{
		{"rejected", "host"}:          4, // relay, unrouted, SRS, nobody@ after RSET
		{"rejected", "plugin"}:        4, // gone@ three times, dmarc at DATA
		{"rejected", "destination"}:   2, // bad@, the message at DATA
		{"tempfailed", "destination"}: 1, // later@
		{"forwarded", "destination"}:  1,
		{"dropped", "plugin"}:         1,
	}
	for _, o := range []string{"forwarded", "rejected", "tempfailed", "dropped"} {
		for _, by := range []string{"host", "plugin", "destination"} {
			key := fmt.Sprintf(`sluice_recipients_total{decided_by=%q,outcome=%q}`, by, o)
			if m[key] != want[[2]string{o, by}] {
				t.Errorf("%s = %v, want %v", key, m[key], want[[2]string{o, by}])
			}
		}
	}
	for o, n := range map[string]float64{"delivered": 1, "rejected": 2, "tempfailed": 0, "dropped": 1} {
		if key := fmt.Sprintf(`sluice_messages_total{outcome=%q}`, o); m[key] != n {
			t.Errorf("%s = %v, want %v", key, m[key], n)
		}
	}
}

// A plugin whose on_failure is skip and that failed, at load or when
// called, may be the router: a recipient nobody routed then gets 451
// 4.3.0, never a permanent 550 for a failure of ours. A recipient that
// the same plugin answered without failing still gets 550.
func TestSkippedFailureIsNoPermanentRefusal(t *testing.T) {
	t.Run("left out at load", func(t *testing.T) {
		e := startEnv(t, envOptions{plugins: `
[[plugin]]
name = "router"
path = "does-not-exist.wasm"
stages = ["rcpt"]
on_failure = "skip"
`})
		c := e.client(t)
		if err := c.Mail("alice@example.org", nil); err != nil {
			t.Fatal(err)
		}
		wantReply(t, "unrouted, router left out", c.Rcpt("info@ours.test", nil), 451, smtp.EnhancedCode{4, 3, 0}, "Filter router failed, try again later")
		c.Quit()
		wantAttrs(t, "router left out", txnLine(t, e, "alice@example.org"), map[string]string{
			"refused": "info@ours.test (plugin:router): 451 4.3.0 Filter router failed, try again later",
		})
	})
	t.Run("failed when called", func(t *testing.T) {
		e := startEnv(t, envOptions{plugins: fmt.Sprintf(`
[[plugin]]
name = "scripted"
path = %q
stages = ["rcpt"]
on_failure = "skip"
`, wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"))})
		c := e.client(t)
		if err := c.Mail("alice@example.org", nil); err != nil {
			t.Fatal(err)
		}
		wantReply(t, "unrouted, plugin trapped", c.Rcpt("fatal@ours.test", nil), 451, smtp.EnhancedCode{4, 3, 0}, "Filter scripted failed, try again later")
		wantReply(t, "unrouted, plugin answered", c.Rcpt("nobody@ours.test", nil), 550, smtp.EnhancedCode{5, 1, 1}, "no such recipient here")
		c.Quit()
	})
}

// A session a plugin refuses at connect or HELO has no transaction: it
// gets a line of its own, with the stage, the reply and the plugin.
func TestSessionRefusedLogged(t *testing.T) {
	e := startEnv(t, envOptions{plugins: fmt.Sprintf(`
[[plugin]]
name = "gate"
path = %q
stages = ["connect"]
[plugin.config]
verdict = "reject"
code = 554
enhanced = "5.7.1"
text = "No mail from you"
permit = ["reject"]
`, wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"))})
	c := rawConn(t, e.addr, "127.0.0.1")
	c.send("EHLO sender.example.org")
	if got := c.reply(); got != "554 5.7.1 No mail from you" {
		t.Errorf("EHLO: %q, want the plugin's 554 5.7.1", got)
	}
	lines := logLines(t, e.logs.String(), "session refused")
	if len(lines) != 1 {
		t.Fatalf("%d lines session refused, want 1", len(lines))
	}
	wantAttrs(t, "session refused", lines[0], map[string]string{"client": "127.0.0.1", "stage": "connect",
		"reply": "554 5.7.1 No mail from you", "decided_by": "plugin:gate"})
	if lines[0]["session"] == "" {
		t.Error("session refused: no session id")
	}
}
