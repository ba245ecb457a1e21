package gateway_test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// Internationalised addresses end to end (RFC 6530-6532): the gateway
// serves piñata.example (written as a U-label, served in either form),
// and forwards to two destinations: mx.dest.test, which offers SMTPUTF8,
// and mx.plain.test, which does not.
const eaiRules = `
[plugin.config]
[[plugin.config.rule]]
match = "piñata@piñata.example"
action = "forward"
to = "piñata@dest.test"
[[plugin.config.rule]]
match = "info@xn--piata-pta.example"
action = "forward"
to = "me@dest.test"
[[plugin.config.rule]]
match = "plain@piñata.example"
action = "forward"
to = "me@plain.test"
[[plugin.config.rule]]
match = "utf8@piñata.example"
action = "forward"
to = "piñata@plain.test"
[[plugin.config.rule]]
match = "books@piñata.example"
action = "forward"
to = "me@bücher.test"
[[plugin.config.rule]]
match = "both@piñata.example"
action = "forward"
to = ["me@dest.test", "piñata@plain.test"]
[[plugin.config.rule]]
match = "ñandú@piñata.example"
action = "forward"
to = ["me@dest.test", "me@plain.test"]
[[plugin.config.rule]]
match = "books-too@piñata.example"
action = "forward"
to = ["me@dest.test", "me@bücher.test"]
`

// The destination without SMTPUTF8, and an internationalised destination
// domain whose MX is found under its A-label only.
const eaiZone = `
plain.test.         300 IN MX 10 mx.plain.test.
mx.plain.test.      300 IN A 127.0.0.2
xn--bcher-kva.test. 300 IN MX 10 mx.plain.test.
`

// startEAIEnv starts a gateway for piñata.example with the router's
// eaiRules, and the destination without SMTPUTF8 beside e.dest.
func startEAIEnv(t *testing.T) (*env, *destination) {
	t.Helper()
	e := startEnv(t, envOptions{
		domains: `["ours.test", "piñata.example"]`,
		plugins: fmt.Sprintf("[[plugin]]\nname = \"router\"\npath = %q\nstages = [\"rcpt\"]\n%s", wasmbuild.ForTest(t, "./plugins/router"), eaiRules),
	})
	e.addRecords(t, eaiZone)
	return e, startPlainDestination(t, "127.0.0.2", e.dest.port())
}

// startPlainDestination starts a destination like e.dest, on ip and the
// port the gateway relays to, that does not offer SMTPUTF8 (nor STARTTLS).
func startPlainDestination(t *testing.T, ip, port string) *destination {
	t.Helper()
	l, err := net.Listen("tcp4", net.JoinHostPort(ip, port))
	if err != nil {
		t.Skipf("the relay port is taken on %s: %v", ip, err)
	}
	d := &destination{addr: l.Addr().String()}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &destSession{d: d, conn: c}, nil
	}))
	s.Domain = "mx.plain.test"
	s.ErrorLog = nopLogger{}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return d
}

// utf8Message has UTF-8 header fields (RFC 6532).
const utf8Message = "From: Pelé <pelé@example.org>\r\n" +
	"To: Piñata <piñata@piñata.example>\r\n" +
	"Subject: ¡Feliz cumpleaños!\r\n" +
	"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <eai-1@example.org>\r\n" +
	"\r\n" +
	"Olá, piñata.\r\n"

// A UTF-8 address at a served IDN domain, as a U-label or an A-label, is
// accepted with SMTPUTF8 as recipient and as sender, routed, and
// forwarded with the UTF-8 sender in
// the SRS address, intact, to a destination that offers SMTPUTF8; the
// signatures over the UTF-8 header verify, ours and dkimpy's way; and a
// bounce to the SRS address goes back to the UTF-8 sender.
func TestEAIToADestinationWithSMTPUTF8(t *testing.T) {
	e, _ := startEAIEnv(t)
	c := e.client(t)
	wantReply(t, "a UTF-8 recipient without SMTPUTF8", sendMail(t, c, "alice@example.org", "piñata@piñata.example", testMessage),
		553, smtp.EnhancedCode{5, 6, 7}, "SMTPUTF8")
	c.Reset()

	if err := c.Mail("pelé@example.org", &smtp.MailOptions{UTF8: true}); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"piñata@piñata.example", "piñata@xn--piata-pta.example"} {
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatalf("RCPT %s: %v", rcpt, err)
		}
	}
	if _, err := sendData(t, c, utf8Message); err != nil {
		t.Fatal(err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	d := got[0]
	if !d.utf8 || !strings.HasPrefix(d.from, "SRS0=") || !strings.HasSuffix(d.from, "=example.org=pelé@ours.test") || !slices.Equal(d.to, []string{"piñata@dest.test"}) {
		t.Errorf("delivery from %q to %q, SMTPUTF8 %v: want the UTF-8 sender in the SRS address, to piñata@dest.test, with SMTPUTF8", d.from, d.to, d.utf8)
	}
	if !strings.Contains(string(d.data), "\r\n"+utf8Message[:strings.Index(utf8Message, "\r\n\r\n")]) {
		t.Errorf("the UTF-8 header did not arrive intact:\n%s", d.data)
	}
	e.checkForwarded(t, d.data, 1)

	// piñata@piñata.example as the sender: SRS keeps its local part and
	// gives its domain as the A-label.
	if err := c.Mail("piñata@piñata.example", &smtp.MailOptions{UTF8: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("info@piñata.example", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sendData(t, c, utf8Message); err != nil {
		t.Fatal(err)
	}
	got = e.dest.deliveries()
	if len(got) != 2 || !got[1].utf8 || !strings.HasSuffix(got[1].from, "=xn--piata-pta.example=piñata@ours.test") || !slices.Equal(got[1].to, []string{"me@dest.test"}) {
		t.Errorf("delivery %+v: want from SRS0=...=xn--piata-pta.example=piñata@ours.test to me@dest.test, with SMTPUTF8", got[len(got)-1])
	}

	// The bounce address reverses to the UTF-8 sender.
	if err := c.Mail("", &smtp.MailOptions{UTF8: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(d.from, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sendData(t, c, "Subject: Undelivered Mail\r\n\r\nbounce\r\n"); err != nil {
		t.Fatal(err)
	}
	got = e.dest.deliveries()
	if len(got) != 3 || got[2].from != "" || !slices.Equal(got[2].to, []string{"pelé@example.org"}) {
		t.Errorf("bounce delivered as %+v, want from <> to pelé@example.org", got[len(got)-1])
	}
}

// To a destination without SMTPUTF8, a message that needs nothing goes
// without it, though the client said SMTPUTF8: its addresses' domains as
// A-labels (the destination domain's MX found by its A-label), and our
// Received field does not name the UTF-8 recipient. What needs SMTPUTF8
// (a UTF-8 sender after SRS, a UTF-8 destination address, a UTF-8 header)
// is refused in session, and nothing is sent: never a mangled address.
func TestEAIToADestinationWithoutSMTPUTF8(t *testing.T) {
	e, plain := startEAIEnv(t)
	c := e.client(t)
	utf8 := &smtp.MailOptions{UTF8: true}

	// Needs nothing: to me@plain.test, and to me@bücher.test, whose MX
	// is only under xn--bcher-kva.test.
	if err := c.Mail("alice@example.org", utf8); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("plain@piñata.example", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sendData(t, c, testMessage); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@piñata.example", utf8); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("books@piñata.example", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sendData(t, c, testMessage); err != nil {
		t.Fatal(err)
	}
	got := plain.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	for i, want := range []struct{ from, to string }{{"=example.org=alice@ours.test", "me@plain.test"}, {"=xn--piata-pta.example=alice@ours.test", "me@xn--bcher-kva.test"}} {
		d := got[i]
		if d.utf8 || !strings.HasSuffix(d.from, want.from) || !slices.Equal(d.to, []string{want.to}) {
			t.Errorf("delivery %d from %q to %q, SMTPUTF8 %v: want from ...%s to %s without SMTPUTF8", i, d.from, d.to, d.utf8, want.from, want.to)
		}
		if !strings.Contains(fieldValue(d.data, "Received"), " with UTF8SMTP ") || strings.ContainsFunc(string(d.data), func(r rune) bool { return r > 127 }) {
			t.Errorf("delivery %d: want a Received field with UTF8SMTP and no UTF-8 at all:\n%s", i, d.data)
		}
	}

	// Needs SMTPUTF8: refused in session, with 553 5.6.7 at RCPT for an
	// address, and to DATA for a header.
	if err := c.Mail("pelé@example.org", utf8); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "a UTF-8 sender", c.Rcpt("plain@piñata.example", nil), 553, smtp.EnhancedCode{5, 6, 7}, "mx.plain.test[127.0.0.2]")
	c.Reset()
	if err := c.Mail("alice@example.org", utf8); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "a UTF-8 destination", c.Rcpt("utf8@piñata.example", nil), 553, smtp.EnhancedCode{5, 6, 7}, "does not support SMTPUTF8")
	if err := c.Rcpt("plain@piñata.example", nil); err != nil {
		t.Fatal(err)
	}
	_, err := sendData(t, c, utf8Message)
	wantReply(t, "a UTF-8 header", err, 553, smtp.EnhancedCode{5, 6, 7}, "its header is not ASCII")
	if n := len(plain.deliveries()); n != 2 {
		t.Errorf("%d deliveries, want still 2", n)
	}
	// The session goes on; an A-label needs no SMTPUTF8.
	if err := sendMail(t, c, "alice@example.org", "plain@xn--piata-pta.example", testMessage); err != nil {
		t.Fatal(err)
	}
}

// Queued for a destination without SMTPUTF8 (an address in another
// domain than the in-session one): a copy that needs SMTPUTF8 (a UTF-8
// destination address) is never sent mangled; it fails, and its sender
// gets a DSN of the RFC 6533 kind. A copy that needs nothing of it goes
// without it, though the recipient the client gave is UTF-8 and the
// in-session destination took it as such.
func TestEAIQueuedForADestinationWithoutSMTPUTF8(t *testing.T) {
	e, plain := startEAIEnv(t)
	authenticateExampleOrg(t, e)
	c := e.client(t)
	utf8 := &smtp.MailOptions{UTF8: true}
	for _, rcpt := range []string{"both@piñata.example", "ñandú@piñata.example", "books-too@piñata.example"} {
		if err := c.Mail("alice@example.org", utf8); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatalf("RCPT %s: %v", rcpt, err)
		}
		if _, err := sendData(t, c, figuresMessage); err != nil {
			t.Fatalf("DATA for %s: %v", rcpt, err)
		}
	}
	waitFor(t, "the DSN at example.org's MX", func() bool { return len(dsns(e.dest)) > 0 })
	waitQueueEmpty(t, e)
	got := plain.deliveries()
	if len(got) != 2 {
		t.Fatalf("plain.test received %d messages, want two; the log:\n%s", len(got), e.logs.String())
	}
	for i, to := range []string{"me@plain.test", "me@xn--bcher-kva.test"} {
		if got[i].utf8 || !slices.Equal(got[i].to, []string{to}) || strings.ContainsFunc(string(got[i].data), func(r rune) bool { return r > 127 }) {
			t.Errorf("plain.test received for %v, SMTPUTF8 %v; want an ASCII copy for %s, without SMTPUTF8", got[i].to, got[i].utf8, to)
		}
	}
	d := dsns(e.dest)
	if len(d) != 1 || !d[0].utf8 {
		t.Fatalf("%d DSNs, want one, sent with SMTPUTF8; the log:\n%s", len(d), e.logs.String())
	}
	signedByUs(t, e, d[0].data)
	r := parseDSN(t, d[0].data)
	if r.ReportType != "delivery-status" || strings.Join(r.Parts, " ") != "text/plain message/global-delivery-status text/rfc822-headers" || len(r.Status) != 2 {
		t.Fatalf("report-type %q, parts %v, %d status blocks: want a global-delivery-status report", r.ReportType, r.Parts, len(r.Status))
	}
	rcpt := r.Status[1]
	r.wantFields(t, "DSN", rcpt, map[string]string{
		"Original-Recipient": "utf-8;both@piñata.example",
		"Final-Recipient":    "utf-8;piñata@plain.test",
		"Action":             "failed",
		"Status":             "5.6.7",
	})
	if got := r.field(rcpt, "Diagnostic-Code"); !strings.Contains(got, "553 5.6.7") {
		t.Errorf("Diagnostic-Code %q, want the 553 5.6.7", got)
	}
}
