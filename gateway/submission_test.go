package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/login"
)

const (
	subUser     = "alice"
	subPassword = "correct horse battery staple"
)

// startSubmission starts a gateway serving ours.test and custom.test,
// custom.test with a DKIM key of its own (selector c1, published), and
// the submission service with one user, alice, who may send as
// info@custom.test and as anyone at ours.test. more are other lines of
// [submission]; o the rest of the environment.
func startSubmission(t *testing.T, more string, o envOptions) *env {
	t.Helper()
	hash, err := login.HashBcrypt(subPassword)
	if err != nil {
		t.Fatal(err)
	}
	key := testKeys(t).list
	pem, _ := dkim.MarshalKey(key)
	path := filepath.Join(t.TempDir(), "custom.pem")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	o.domains = `["ours.test", "custom.test"]`
	o.dkim += fmt.Sprintf("\n[[dkim.key]]\ndomain = \"custom.test\"\nselector = \"c1\"\nfile = %q", path)
	o.submission = fmt.Sprintf("%s\n[[submission.user]]\nname = %q\npassword_hash = %q\nsenders = [\"info@custom.test\", \"*@ours.test\"]\n",
		more, subUser, hash)
	e := startEnv(t, o)
	txt, _ := dkim.TXTRecord(key)
	e.addRecords(t, fmt.Sprintf("c1._domainkey.custom.test. 300 IN TXT %s\n", splitTXT(txt)))
	return e
}

// submissionClient connects to the STARTTLS listener, starts TLS and
// logs in as alice.
func submissionClient(t *testing.T, e *env) *smtp.Client {
	t.Helper()
	c := tlsClient(t, e.subAddr)
	if err := c.Auth(sasl.NewPlainClient("", subUser, subPassword)); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	return c
}

const submittedMessage = "From: Info <info@custom.test>\r\n" +
	"To: Me <me@dest.test>\r\n" +
	"Subject: a reply\r\n" +
	"\r\n" +
	"Hello from the custom address.\r\n"

// Before TLS the submission port offers no AUTH, refuses it with RFC
// 4954's 538 and MAIL with 530; after STARTTLS, MAIL still needs a
// login, and PLAIN and LOGIN work with the right password only.
func TestSubmissionLogin(t *testing.T) {
	e := startSubmission(t, "", envOptions{})

	c := dialClient(t, e.subAddr)
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before TLS")
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Error("STARTTLS not offered")
	}
	wantReply(t, "AUTH in clear text", c.Auth(sasl.NewPlainClient("", subUser, subPassword)),
		538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
	wantReply(t, "MAIL in clear text", c.Mail("info@custom.test", nil), 530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")

	c = tlsClient(t, e.subAddr)
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Errorf("AUTH over TLS: %v %q, want PLAIN LOGIN", ok, mechs)
	}
	wantReply(t, "MAIL before AUTH", c.Mail("info@custom.test", nil), 530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	wantReply(t, "AUTH PLAIN, wrong password", c.Auth(sasl.NewPlainClient("", subUser, "wrong")), 535, smtp.EnhancedCode{5, 7, 8}, "")
	wantReply(t, "AUTH PLAIN as another user", c.Auth(sasl.NewPlainClient("bob", subUser, subPassword)), 535, smtp.EnhancedCode{5, 7, 8}, "authorization identity")
	wantReply(t, "AUTH LOGIN, wrong password", c.Auth(sasl.NewLoginClient(subUser, "wrong")), 535, smtp.EnhancedCode{5, 7, 8}, "")
	if err := c.Auth(sasl.NewLoginClient(subUser, subPassword)); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if err := sendMail(t, c, "info@custom.test", "me@dest.test", submittedMessage); err != nil {
		t.Fatalf("after AUTH LOGIN: %v", err)
	}
	if err := sendMail(t, submissionClient(t, e), "info@custom.test", "me@dest.test", submittedMessage); err != nil {
		t.Fatalf("after AUTH PLAIN: %v", err)
	}
	if n := len(e.dest.deliveries()); n != 2 {
		t.Errorf("%d messages delivered, want 2", n)
	}
	if !strings.Contains(e.logs.String(), "user="+subUser+" from=info@custom.test") {
		t.Errorf("the message's log line does not name the user:\n%s", e.logs.String())
	}
}

// Port 465: TLS from the first byte, the certificate the STARTTLS one.
func TestSubmissionImplicitTLS(t *testing.T) {
	e := startSubmission(t, "", envOptions{})
	c, err := smtp.DialTLS(e.subTLSAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("laptop.example"); err != nil {
		t.Fatal(err)
	}
	state, ok := c.TLSConnectionState()
	if !ok || state.PeerCertificates[0].Subject.CommonName != "mx.ours.test" {
		t.Fatalf("TLS %v, certificate %v", ok, state.PeerCertificates)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered in TLS")
	}
	if err := c.Auth(sasl.NewPlainClient("", subUser, subPassword)); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := sendMail(t, c, "info@custom.test", "me@dest.test", submittedMessage); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	waitFor(t, "the session to end", func() bool { return scrape(t, e)["sluice_submission_sessions_current"] == 0 })
	if m := scrape(t, e); m["sluice_submission_sessions_total"] != 1 || m[`sluice_submission_tls_sessions_total{direction="inbound",version="TLS1.3"}`] != 1 {
		t.Errorf("sessions %v, in TLS 1.3 %v: want 1 each", m["sluice_submission_sessions_total"],
			m[`sluice_submission_tls_sessions_total{direction="inbound",version="TLS1.3"}`])
	}
	if m := scrape(t, e); m["sluice_sessions_total"] != 0 {
		t.Errorf("the MX counted %v sessions, want 0", m["sluice_sessions_total"])
	}
}

// A user may send only as its own addresses: in MAIL FROM, and every
// address of From.
func TestSubmissionSenders(t *testing.T) {
	e := startSubmission(t, "", envOptions{})
	c := submissionClient(t, e)
	wantReply(t, "MAIL FROM someone else", c.Mail("boss@custom.test", nil), 553, smtp.EnhancedCode{5, 7, 1}, "<alice> may not send as <boss@custom.test>")
	wantReply(t, "MAIL FROM:<>", c.Mail("", nil), 553, smtp.EnhancedCode{5, 7, 1}, "<alice> may not send as <>")

	for _, m := range []struct{ what, from, reply string }{
		{"a From of someone else", "From: Boss <boss@custom.test>\r\n", "<alice> may not send as <boss@custom.test>"},
		{"one of two From addresses someone else's", "From: info@custom.test, boss@example.org\r\n", "<alice> may not send as <boss@example.org>"},
	} {
		err := sendMail(t, c, "info@custom.test", "me@dest.test", m.from+"Subject: x\r\n\r\nHi.\r\n")
		wantReply(t, m.what, err, 553, smtp.EnhancedCode{5, 7, 1}, m.reply)
	}
	err := sendMail(t, c, "info@custom.test", "me@dest.test", "Subject: x\r\n\r\nHi.\r\n")
	wantReply(t, "no From", err, 550, smtp.EnhancedCode{5, 6, 0}, "no From field")
	// A pattern: anyone at ours.test, in the envelope and in From.
	if err := sendMail(t, c, "sales@ours.test", "me@dest.test", "From: sales@ours.test\r\nSubject: x\r\n\r\nHi.\r\n"); err != nil {
		t.Errorf("as sales@ours.test: %v", err)
	}
	if n := len(e.dest.deliveries()); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}
}

// What leaves: the user's own sender, no SRS; signed with the From
// domain's key (verified by dkimpy, d= the From domain: DMARC aligns)
// and the gateway's; RFC 6409/8314 trace fields without the client's
// address with hide_client; Date and Message-ID added. The
// destination's refusal is the client's reply.
func TestSubmissionDelivers(t *testing.T) {
	e := startSubmission(t, "hide_client = true", envOptions{})
	c := submissionClient(t, e)
	if err := sendMail(t, c, "info@custom.test", "me@dest.test", submittedMessage); err != nil {
		t.Fatal(err)
	}
	d := e.dest.deliveries()[0]
	if d.from != "info@custom.test" || !slices.Equal(d.to, []string{"me@dest.test"}) {
		t.Errorf("delivered from %q to %v, want info@custom.test (no SRS) to me@dest.test", d.from, d.to)
	}
	if got, want := e.deliveredSignatures(t), []string{"custom.test/c1", "ours.test/rsa", "ours.test/ed"}; !slices.Equal(got, want) {
		t.Errorf("signatures %v, want %v", got, want)
	}
	received := fields(d.data, "Received")
	if len(received) != 1 || !strings.HasPrefix(received[0], "by mx.ours.test (Sluice) with ESMTPSA id ") ||
		!strings.Contains(received[0], " for <me@dest.test> tls TLS_") || strings.Contains(received[0], "127.0.0.1") {
		t.Errorf("Received %q, want ours with ESMTPSA and tls, without the client", received)
	}
	if ar := fields(d.data, "Authentication-Results"); len(ar) != 1 || ar[0] != "mx.ours.test; auth=pass smtp.auth=alice" {
		t.Errorf("Authentication-Results %q, want auth=pass smtp.auth=alice", ar)
	}
	if len(fields(d.data, "Date")) != 1 || len(fields(d.data, "Message-ID")) != 1 {
		t.Errorf("Date %q, Message-ID %q: want one each, added", fields(d.data, "Date"), fields(d.data, "Message-ID"))
	}
	if len(fields(d.data, "ARC-Seal")) != 0 {
		t.Error("submitted mail is ARC-sealed")
	}

	// The destination's refusal, in session.
	err := sendMail(t, c, "info@custom.test", "bad@dest.test", submittedMessage)
	wantReply(t, "to a mailbox the destination refuses", err, 550, smtp.EnhancedCode{5, 1, 1}, "does not exist")
}

// A Bcc field the client left in the message is not delivered: every
// recipient gets the same copy, so it would show them all the blind
// copies. The blind recipient still gets the message, and the
// signatures cover the header without it. Nor is a Return-Path, the
// final delivery's to add.
func TestSubmissionRemovesBcc(t *testing.T) {
	e := startSubmission(t, "", envOptions{})
	c := submissionClient(t, e)
	if err := c.Mail("info@custom.test", nil); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"me@dest.test", "hidden@dest.test"} {
		if err := c.Rcpt(to, nil); err != nil {
			t.Fatalf("RCPT %s: %v", to, err)
		}
	}
	msg := "Return-Path: <info@custom.test>\r\nFrom: Info <info@custom.test>\r\nTo: Me <me@dest.test>\r\nBcc: Hidden <hidden@dest.test>\r\n" +
		"Resent-Bcc: hidden@dest.test\r\nSubject: with a blind copy\r\n\r\nHello.\r\n"
	if _, err := sendData(t, c, msg); err != nil {
		t.Fatal(err)
	}
	d := e.dest.deliveries()[0]
	if !slices.Equal(d.to, []string{"me@dest.test", "hidden@dest.test"}) {
		t.Errorf("delivered to %v, want both recipients", d.to)
	}
	if bcc, resent := fields(d.data, "Bcc"), fields(d.data, "Resent-Bcc"); len(bcc) != 0 || len(resent) != 0 {
		t.Errorf("delivered with Bcc %q, Resent-Bcc %q; want neither", bcc, resent)
	}
	if rp := fields(d.data, "Return-Path"); len(rp) != 0 {
		t.Errorf("delivered with Return-Path %q, want none", rp)
	}
	if len(fields(d.data, "To")) != 1 || len(fields(d.data, "Subject")) != 1 {
		t.Errorf("the other fields are not all delivered:\n%s", d.data)
	}
	if got, want := e.deliveredSignatures(t), []string{"custom.test/c1", "ours.test/rsa", "ours.test/ed"}; !slices.Equal(got, want) {
		t.Errorf("signatures %v, want %v", got, want)
	}
}

// The console's record of a submitted message without a Message-ID has
// the one Sluice added, which its recipients see.
func TestSubmissionRecordsAddedMessageID(t *testing.T) {
	e := startSubmission(t, "", envOptions{sections: consoleSections("")})
	if err := sendMail(t, submissionClient(t, e), "info@custom.test", "me@dest.test", submittedMessage); err != nil {
		t.Fatal(err)
	}
	ids := fields(e.dest.deliveries()[0].data, "Message-ID")
	if len(ids) != 1 {
		t.Fatalf("Message-ID %q, want one, added", ids)
	}
	var recs []activity.Record
	waitFor(t, "the record", func() bool {
		var err error
		recs, _, err = e.gw.Activity().Query(context.Background(), activity.Filter{})
		return err == nil && len(recs) == 1
	})
	if recs[0].MessageID != ids[0] {
		t.Errorf("recorded Message-ID %q, want the one delivered, %q", recs[0].MessageID, ids[0])
	}
}

// The console's record of a submitted message names the user who sent
// it; that of a message forwarded by the MX of the same gateway names
// none.
func TestSubmissionRecordsUser(t *testing.T) {
	e := startSubmission(t, "", envOptions{sections: consoleSections("")})
	if err := sendMail(t, submissionClient(t, e), "info@custom.test", "me@dest.test", submittedMessage); err != nil {
		t.Fatal(err)
	}
	if err := sendMail(t, e.client(t), "bob@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	var recs []activity.Record
	waitFor(t, "the records", func() bool {
		var err error
		recs, _, err = e.gw.Activity().Query(context.Background(), activity.Filter{})
		return err == nil && len(recs) == 2
	})
	byFrom := map[string]activity.Record{}
	for _, r := range recs {
		byFrom[r.From] = r
	}
	if r := byFrom["info@custom.test"]; r.User != "alice" || r.Outcome != "forwarded" {
		t.Errorf("submitted: user %q, outcome %q; want alice, forwarded", r.User, r.Outcome)
	}
	if r, ok := byFrom["bob@example.org"]; !ok || r.User != "" {
		t.Errorf("forwarded by the MX: user %q (recorded %v), want none", r.User, ok)
	}
	if got, _, err := e.gw.Activity().Query(context.Background(), activity.Filter{User: "alice"}); err != nil || len(got) != 1 || got[0].From != "info@custom.test" {
		t.Errorf("alice's records: %+v, %v; want the submitted one", got, err)
	}
}

// An Authentication-Results field in our name that the client wrote is
// removed, as on the MX (RFC 8601 §5); one of another server's stays.
func TestSubmissionRemovesForgedResults(t *testing.T) {
	e := startSubmission(t, "", envOptions{})
	msg := "Authentication-Results: mx.ours.test; dkim=pass header.d=custom.test\r\n" +
		"Authentication-Results: other.example; spf=pass smtp.mailfrom=info@custom.test\r\n" + submittedMessage
	if err := sendMail(t, submissionClient(t, e), "info@custom.test", "me@dest.test", msg); err != nil {
		t.Fatal(err)
	}
	got := fields(e.dest.deliveries()[0].data, "Authentication-Results")
	want := []string{"mx.ours.test; auth=pass smtp.auth=alice", "other.example; spf=pass smtp.mailfrom=info@custom.test"}
	if !slices.Equal(got, want) {
		t.Errorf("Authentication-Results %q, want %q", got, want)
	}
}

// sign_recipient_domain is for forwarded mail: submitted mail is signed
// for its From domain, never for where it goes, even a domain of ours
// with keys of its own.
func TestSubmissionNotSignedForRecipientDomain(t *testing.T) {
	e := startSubmission(t, "", envOptions{dkim: "sign_recipient_domain = true"})
	e.addRecords(t, "custom.test. 300 IN MX 10 mx.dest.test.\n")
	msg := "From: sales@ours.test\r\nTo: someone@custom.test\r\nSubject: x\r\n\r\nHi.\r\n"
	if err := sendMail(t, submissionClient(t, e), "sales@ours.test", "someone@custom.test", msg); err != nil {
		t.Fatal(err)
	}
	if got, want := e.deliveredSignatures(t), []string{"ours.test/rsa", "ours.test/ed"}; !slices.Equal(got, want) {
		t.Errorf("signatures %v, want %v: the From domain's (the gateway's) alone", got, want)
	}
}

// Recipients at two domains: the first relayed in session, the other
// queued, as for forwarded mail.
func TestSubmissionTwoDomains(t *testing.T) {
	e := startSubmission(t, "", envOptions{dest2: true})
	c := submissionClient(t, e)
	if err := c.Mail("info@custom.test", nil); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"me@dest.test", "you@dest2.test"} {
		if err := c.Rcpt(to, nil); err != nil {
			t.Fatalf("RCPT %s: %v", to, err)
		}
	}
	if _, err := sendData(t, c, submittedMessage); err != nil {
		t.Fatal(err)
	}
	a, b := waitDeliveries(t, e.dest, 1), waitDeliveries(t, e.dest2, 1)
	if a[0].from != "info@custom.test" || b[0].from != "info@custom.test" || b[0].to[0] != "you@dest2.test" {
		t.Errorf("dest.test received %+v, dest2.test %+v", a, b)
	}
}

// Mail a user sends to an address at one of our own domains goes out to
// that domain's MX, which is this gateway, and is routed there as mail
// from outside: here forwarded to me@dest.test, with the destination's
// reply passed back through both sessions, and the custom domain's
// signature still verifying at the end.
func TestSubmissionToOurDomain(t *testing.T) {
	e := startSubmission(t, "", envOptions{})
	// The relay dials every MX on the destination's port: the gateway's
	// MX is found there, at 127.0.0.3.
	passOn(t, "127.0.0.3:"+e.dest.port(), e.addr)
	e.addRecords(t, "ours.test. 300 IN MX 10 mx.loop.test.\nmx.loop.test. 300 IN A 127.0.0.3\n")

	c := submissionClient(t, e)
	if err := c.Mail("info@custom.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("info@ours.test", nil); err != nil {
		t.Fatalf("RCPT to our own domain: %v", err)
	}
	msg := strings.Replace(submittedMessage, "To: Me <me@dest.test>", "To: <info@ours.test>", 1)
	resp, err := sendData(t, c, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.StatusText, "OK: queued as DEST1") {
		t.Errorf("DATA: %q, want the destination's reply, passed on by our MX", resp.StatusText)
	}
	d := waitDeliveries(t, e.dest, 1)[0]
	if !slices.Equal(d.to, []string{"me@dest.test"}) || !strings.HasPrefix(d.from, "SRS0=") {
		t.Errorf("delivered from %q to %v, want from an SRS address to me@dest.test (the MX's route)", d.from, d.to)
	}
	var with []string
	for _, r := range fields(d.data, "Received") {
		if _, after, ok := strings.Cut(r, " with "); ok {
			with = append(with, strings.Fields(after)[0])
		}
	}
	if !slices.Equal(with, []string{"ESMTPS", "ESMTPSA"}) {
		t.Errorf("Received fields with %v, want the MX's ESMTPS over the submission's ESMTPSA", with)
	}
	if sigs := e.deliveredSignatures(t); !slices.Contains(sigs, "custom.test/c1") {
		t.Errorf("signatures %v, want custom.test's among them", sigs)
	}
}

// passOn listens on addr and passes each connection on to target.
func passOn(t *testing.T, addr, target string) {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
}

// A reload changes the users for the next session: a user removed can
// no longer log in, one added can, without a restart.
func TestSubmissionUsersReload(t *testing.T) {
	e := startSubmission(t, "", envOptions{})
	hash, err := login.HashBcrypt("bob's password")
	if err != nil {
		t.Fatal(err)
	}
	alice := regexp.MustCompile(`name = "alice"\npassword_hash = "[^"]*"\nsenders = \[[^\]]*\]\n`)
	edited := alice.ReplaceAllLiteralString(e.cfgText, fmt.Sprintf("name = \"bob\"\npassword_hash = %q\nsenders = [\"*@ours.test\"]\n", hash))
	if edited == e.cfgText {
		t.Fatal("no user alice in the configuration")
	}
	if err := os.WriteFile(e.cfgPath, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, a := postReload(t, e); code != 200 || !a.OK || len(a.NotApplied) != 0 {
		t.Fatalf("reload: %d %+v", code, a)
	}
	c := tlsClient(t, e.subAddr)
	wantReply(t, "alice after the reload", c.Auth(sasl.NewPlainClient("", subUser, subPassword)), 535, smtp.EnhancedCode{5, 7, 8}, "")
	if err := c.Auth(sasl.NewPlainClient("", "bob", "bob's password")); err != nil {
		t.Fatalf("bob after the reload: %v", err)
	}
	wantReply(t, "bob as info@custom.test", c.Mail("info@custom.test", nil), 553, smtp.EnhancedCode{5, 7, 1}, "<bob> may not send as <info@custom.test>")
}

// Failed logins past max_failures_per_ip make the next wait: 454 4.7.0,
// even with the right password, which the session passes on.
func TestSubmissionThrottled(t *testing.T) {
	e := startSubmission(t, "max_failures_per_ip = 2", envOptions{})
	c := tlsClient(t, e.subAddr)
	for range 2 {
		wantReply(t, "wrong password", c.Auth(sasl.NewPlainClient("", subUser, "wrong")), 535, smtp.EnhancedCode{5, 7, 8}, "")
	}
	wantReply(t, "after two failures", c.Auth(sasl.NewPlainClient("", subUser, subPassword)), 454, smtp.EnhancedCode{4, 7, 0}, "")
}

// The submission service counts its connections apart from the MX's,
// against the same [smtp] limits; one over them on the implicit TLS
// port is closed, since its client cannot read a reply in clear text.
func TestSubmissionConnectionLimits(t *testing.T) {
	e := startSubmission(t, "", envOptions{smtp: "max_connections_per_ip = 1\n"})
	mx := rawConn(t, e.addr, "127.0.0.1")
	sub := rawConn(t, e.subAddr, "127.0.0.1")
	if !strings.HasPrefix(mx.lastLine, "220") || !strings.HasPrefix(sub.lastLine, "220") {
		t.Fatalf("one connection to each service: %q, %q, want 220 each", mx.lastLine, sub.lastLine)
	}
	if got := rawConn(t, e.subAddr, "127.0.0.1").lastLine; !strings.HasPrefix(got, "421 4.7.0") {
		t.Errorf("a second submission connection: %q, want 421 4.7.0", got)
	}
	c, err := net.Dial("tcp", e.subTLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(c); len(got) > 0 || err != nil {
		t.Errorf("a third submission connection, on the implicit TLS port: read %q, %v; want it closed with nothing written", got, err)
	}
	m := scrape(t, e)
	if got := m[`sluice_submission_connections_refused_total{reason="max_connections_per_ip"}`]; got != 2 {
		t.Errorf("submission connections refused: %v, want 2", got)
	}
	if got := m[`sluice_connections_refused_total{reason="max_connections_per_ip"}`]; got != 0 {
		t.Errorf("MX connections refused: %v, want 0", got)
	}
}

// The open relay battery on the submission listeners: every way to get a
// recipient past the login without the right password. Each case is a
// session, lines and the start of each reply; none of them reaches the
// destination. go-smtp's client would not send most of these, so they go
// over a bare connection; "STARTTLS" starts TLS after its 220.
func TestSubmissionOpenRelayBattery(t *testing.T) {
	e := startSubmission(t, `max_failures_per_ip = 1000`, envOptions{})
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	good, wrong := b64("\x00"+subUser+"\x00"+subPassword), b64("\x00"+subUser+"\x00wrong")
	type step struct{ line, want string }
	relay := []step{{"MAIL FROM:<info@custom.test>", "530 5.7.0"}, {"RCPT TO:<victim@dest.test>", "5"}, {"DATA", "5"}}
	tlsHello := []step{{"EHLO laptop.example", "250"}, {"STARTTLS", "220"}, {"EHLO laptop.example", "250"}}
	cat := func(parts ...[]step) []step { return slices.Concat(parts...) }
	cases := []struct {
		name     string
		implicit bool // port 465
		steps    []step
	}{
		{"no AUTH, clear text", false, cat([]step{{"EHLO laptop.example", "250"}, {"MAIL FROM:<info@custom.test>", "530 5.7.0"}, {"RCPT TO:<victim@dest.test>", "5"}})},
		{"AUTH in clear text, then STARTTLS", false, cat([]step{{"EHLO laptop.example", "250"}, {"AUTH PLAIN " + good, "538 5.7.11"}, {"AUTH LOGIN", "538 5.7.11"}, {"STARTTLS", "220"}, {"EHLO laptop.example", "250"}}, relay)},
		{"no AUTH, in TLS", false, cat(tlsHello, relay, []step{{"BDAT 5 LAST", "5"}})},
		{"no AUTH, port 465", true, cat([]step{{"EHLO laptop.example", "250"}}, relay)},
		{"wrong password", false, cat(tlsHello, []step{{"AUTH PLAIN " + wrong, "535 5.7.8"}}, relay)},
		{"wrong password, LOGIN", true, cat([]step{{"EHLO laptop.example", "250"}, {"AUTH LOGIN " + b64(subUser), "334"}, {b64("wrong"), "535 5.7.8"}}, relay)},
		{"AUTH cancelled", false, cat(tlsHello, []step{{"AUTH LOGIN", "334"}, {b64(subUser), "334"}, {"*", "501"}}, relay)},
		{"another user's authorization identity", false, cat(tlsHello, []step{{"AUTH PLAIN " + b64("bob\x00"+subUser+"\x00"+subPassword), "535 5.7.8"}}, relay)},
		{"empty user and password", false, cat(tlsHello, []step{{"AUTH PLAIN " + b64("\x00\x00"), "535 5.7.8"}}, relay)},
		{"NUL in the password", false, cat(tlsHello, []step{{"AUTH PLAIN " + b64("\x00"+subUser+"\x00"+subPassword+"\x00x"), "501 5.5.2"}}, relay)},
		{"malformed PLAIN response", false, cat(tlsHello, []step{{"AUTH PLAIN " + b64("no nul at all"), "501 5.5.2"}}, relay)},
		{"malformed base64", false, cat(tlsHello, []step{{"AUTH PLAIN !!!", "4"}}, relay)},
		{"unknown mechanism", false, cat(tlsHello, []step{{"AUTH CRAM-MD5", "504"}, {"AUTH XOAUTH2 " + b64("user=alice"), "504"}}, relay)},
		{"wrong password, EHLO and RSET again", false, cat(tlsHello, []step{{"AUTH PLAIN " + wrong, "535"}, {"EHLO laptop.example", "250"}, {"RSET", "250"}}, relay)},
	}
	for _, c := range cases {
		var rc *rawClient
		if c.implicit {
			conn, err := tls.Dial("tcp", e.subTLSAddr, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			rc = &rawClient{Conn: conn, r: bufio.NewReader(conn), t: t}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			rc.reply()
		} else {
			rc = rawConn(t, e.subAddr, "")
		}
		for _, s := range c.steps {
			rc.send(s.line)
			got := rc.reply()
			if !strings.HasPrefix(got, s.want) {
				t.Errorf("%s: %q: %q, want %s", c.name, s.line, got, s.want)
			}
			if s.line == "STARTTLS" {
				conn := tls.Client(rc.Conn, &tls.Config{InsecureSkipVerify: true})
				rc = &rawClient{Conn: conn, r: bufio.NewReader(conn), t: t}
			}
		}
		rc.Close()
	}
	// Pipelined: a wrong password and the transaction in one write.
	rc := rawConn(t, e.subAddr, "")
	for _, s := range tlsHello {
		rc.send(s.line)
		rc.reply()
		if s.line == "STARTTLS" {
			conn := tls.Client(rc.Conn, &tls.Config{InsecureSkipVerify: true})
			rc = &rawClient{Conn: conn, r: bufio.NewReader(conn), t: t}
		}
	}
	rc.Write([]byte("AUTH PLAIN " + wrong + "\r\nMAIL FROM:<info@custom.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\n"))
	for _, want := range []string{"535", "530", "5", "5"} {
		if got := rc.reply(); !strings.HasPrefix(got, want) {
			t.Errorf("pipelined: %q, want %s", got, want)
		}
	}
	// The MX offers no AUTH and takes none, before TLS or after, and
	// still refuses to relay after the attempts.
	rc = rawConn(t, e.addr, "")
	for _, s := range []step{{"EHLO laptop.example", "250"}, {"AUTH PLAIN " + good, "5"}, {"STARTTLS", "220"}, {"EHLO laptop.example", "250"},
		{"AUTH PLAIN " + good, "504"}, {"AUTH LOGIN", "504"}, {"MAIL FROM:<info@custom.test>", "250"}, {"RCPT TO:<victim@dest.test>", "550 5.7.1"}} {
		rc.send(s.line)
		got := rc.reply()
		if !strings.HasPrefix(got, s.want) {
			t.Errorf("MX: %q: %q, want %s", s.line, got, s.want)
		}
		if s.line == "STARTTLS" {
			conn := tls.Client(rc.Conn, &tls.Config{InsecureSkipVerify: true})
			rc = &rawClient{Conn: conn, r: bufio.NewReader(conn), t: t}
		}
	}
	if ok, mechs := tlsClient(t, e.addr).Extension("AUTH"); ok {
		t.Errorf("the MX offers AUTH %s in TLS", mechs)
	}
	if n := e.dest.connections(); n != 0 {
		t.Errorf("the destination was contacted %d times for relay attempts", n)
	}
}

// The client's EHLO name goes into Received as it came, but for control
// characters: a NUL in it must not put a NUL in the header.
func TestSubmissionReceivedNoControlCharacters(t *testing.T) {
	e := startSubmission(t, "", envOptions{})
	conn, err := tls.Dial("tcp", e.subTLSAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	rc := &rawClient{Conn: conn, r: bufio.NewReader(conn), t: t}
	rc.reply()
	auth := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+subUser+"\x00"+subPassword))
	for _, s := range []struct{ line, want string }{{"EHLO laptop\x00\x1b.example", "250"}, {auth, "235"},
		{"MAIL FROM:<info@custom.test>", "250"}, {"RCPT TO:<me@dest.test>", "250"}, {"DATA", "354"},
		{submittedMessage + ".", "250"}} {
		rc.send(s.line)
		if got := rc.reply(); !strings.HasPrefix(got, s.want) {
			t.Fatalf("%q: %q, want %s", s.line, got, s.want)
		}
	}
	got := e.dest.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	header, _, _ := strings.Cut(string(got[0].data), "\r\n\r\n")
	if !strings.Contains(header, "Received: from laptop") || strings.ContainsAny(header, "\x00\x1b") {
		t.Errorf("header with a control character, or without the Received field:\n%q", header)
	}
}
