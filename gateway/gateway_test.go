package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// The whole path: a message for a custom address reaches the destination
// in session, with an SRS envelope, a Received field and two valid DKIM
// signatures, and the destination's own 250 comes back to the sender.
func TestForwardsWithSRSAndDKIM(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("INFO+news@Ours.Test", nil); err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	resp, err := sendData(t, c, testMessage)
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if resp.StatusText != "2.0.0 OK: queued as DEST1" {
		t.Errorf("DATA reply %q: want the destination's own text", resp.StatusText)
	}

	got := e.dest.deliveries()
	if len(got) != 1 {
		t.Fatalf("destination got %d messages, want 1", len(got))
	}
	d := got[0]
	if len(d.to) != 1 || d.to[0] != "me@dest.test" {
		t.Errorf("destination recipients = %v, want [me@dest.test]", d.to)
	}
	if !strings.HasPrefix(d.from, "SRS0=") || !strings.HasSuffix(d.from, "@ours.test") {
		t.Errorf("envelope sender %q is not an SRS address at ours.test", d.from)
	}
	rw, _ := srs.New(srs.Config{Domain: "ours.test", Secrets: []string{e.secret}})
	if orig, err := rw.Reverse(d.from); err != nil || orig != "alice@example.org" {
		t.Errorf("SRS sender reverses to %q, %v; want alice@example.org", orig, err)
	}
	if !d.tls {
		t.Error("the relay did not use the STARTTLS the destination offered")
	}
	// The original message is intact after our fields.
	if !bytes.HasSuffix(d.data, []byte(testMessage)) {
		t.Errorf("the message changed in transit:\n%s", d.data)
	}
	if !bytes.Contains(d.data, []byte("Received: from sender.example.org ([127.0.0.1]) by mx.ours.test")) {
		t.Errorf("no Received field of ours:\n%s", d.data)
	}

	// Both signatures verify against the keys published in the test zone,
	// looked up through a real resolver.
	res, err := resolver.New(resolver.Config{Nameservers: []string{e.dns.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	verifications, err := msgdkim.VerifyWithOptions(bytes.NewReader(d.data), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(context.Background(), name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(verifications) != 2 {
		t.Errorf("got %d DKIM signatures, want 2 (RSA and Ed25519)", len(verifications))
	}
	for _, v := range verifications {
		if v.Err != nil || v.Domain != "ours.test" {
			t.Errorf("signature by %s: %v", v.Domain, v.Err)
		}
	}
	for _, a := range []string{"a=rsa-sha256", "a=ed25519-sha256"} {
		if !bytes.Contains(d.data, []byte(a)) {
			t.Errorf("no %s signature", a)
		}
	}
}

// The destination's refusals reach the sender in session, word for word.
func TestDestinationRepliesReachTheSender(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "RCPT to a mailbox the destination lacks", c.Rcpt("bad@ours.test", nil),
		550, smtp.EnhancedCode{5, 1, 1}, "The email account that you tried to reach does not exist")
	wantReply(t, "RCPT to a mailbox the destination defers", c.Rcpt("later@ours.test", nil),
		451, smtp.EnhancedCode{4, 2, 1}, "Mailbox temporarily unavailable, try again later")

	// A refusal of the message itself comes back as the reply to DATA.
	if err := c.Rcpt("info@ours.test", nil); err != nil {
		t.Fatal(err)
	}
	_, err := sendData(t, c, dataRejectMarker+"\r\nSubject: x\r\n\r\nbody\r\n")
	wantReply(t, "DATA refused by the destination", err, 554, smtp.EnhancedCode{5, 7, 1}, "Message refused by destination policy")
	if n := len(e.dest.deliveries()); n != 0 {
		t.Errorf("destination stored %d messages, want 0", n)
	}
}

// When no destination host answers, the sender is told to retry: nothing
// is accepted that the destination has not accepted.
func TestUnreachableDestinationIsTemporary(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "RCPT to an unreachable destination", c.Rcpt("down@ours.test", nil),
		451, smtp.EnhancedCode{4, 4, 1}, "mx.down.test[127.0.0.9]")
}

// Sluice relays only for its own domains, whatever the address tricks and
// whatever a plugin says (the router forwards *@other.test in this test).
func TestNeverAnOpenRelay(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.client(t)
	if err := c.Mail("spammer@example.org", nil); err != nil {
		t.Fatal(err)
	}
	attempts := []string{
		"victim@other.test",                      // plain relaying; the router would forward it
		"VICTIM@OTHER.TEST",                      // mixed case
		"user%other.test@ours.test",              // percent hack
		`"user@other.test"@ours.test`,            // quoted local part
		"@ours.test:user@other.test",             // source route
		"user@other.test@ours.test",              // two at-signs
		"other.test!user@ours.test",              // bang path
		"user@[127.0.0.1]",                       // address literal
		"user@ours.test.",                        // trailing dot
		"info@ours.test.other.test",              // our domain as a prefix
		"SRS0=abcd=ZZ=other.test=user@ours.test", // SRS address with a forged hash
	}
	for _, a := range attempts {
		err := c.Rcpt(a, nil)
		var se *smtp.SMTPError
		if err == nil || !asSMTP(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
			t.Errorf("RCPT TO:<%s> = %v, want 550 5.7.1", a, err)
		}
	}
	if n := e.dest.connections(); n != 0 {
		t.Errorf("the destination was contacted %d times for relay attempts", n)
	}
}

// A bounce sent to an SRS address goes back to the original sender.
func TestBounceToSRSAddressReachesTheSender(t *testing.T) {
	e := startEnv(t, envOptions{})
	rw, _ := srs.New(srs.Config{Domain: "ours.test", Secrets: []string{e.secret}})
	srsAddr, err := rw.Forward("alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(t)
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(srsAddr, nil); err != nil {
		t.Fatalf("RCPT to the SRS address: %v", err)
	}
	bounce := "From: MAILER-DAEMON@dest.test\r\nSubject: Undelivered Mail\r\n\r\nIt bounced.\r\n"
	if _, err := sendData(t, c, bounce); err != nil {
		t.Fatalf("DATA: %v", err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || got[0].from != "" || len(got[0].to) != 1 || got[0].to[0] != "alice@example.org" {
		t.Fatalf("bounce delivered as %+v, want <> to alice@example.org", got)
	}
	// A forged or broken hash is refused.
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(srsAddr, "SRS0=", "SRS0=x", 1)
	wantReply(t, "RCPT to a forged SRS address", c.Rcpt(forged, nil), 550, smtp.EnhancedCode{5, 7, 1}, "invalid SRS address")
}

// A destination at one of our own domains, from a plugin the gateway
// cannot check at load (the router refuses such a rule itself), is
// refused as a routing loop.
func TestForwardToOurDomainIsRefused(t *testing.T) {
	e := startEnv(t, envOptions{})
	i := strings.Index(e.cfgText, "[[plugin]]")
	looping := e.cfgText[:i] + fmt.Sprintf(`
[[plugin]]
name = "looper"
path = %q
stages = ["rcpt"]
[plugin.config]
permit = ["destination"]
destination = "info@ours.test"
`, wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"))
	if err := os.WriteFile(e.cfgPath, []byte(looping), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "forward to our own domain", c.Rcpt("someone@ours.test", nil), 554, smtp.EnhancedCode{5, 4, 6}, "routing loop")
}

// The router's reject and drop actions, and an unknown recipient.
func TestRouterRejectDropAndUnknown(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "rejected address", c.Rcpt("gone@ours.test", nil), 550, smtp.EnhancedCode{5, 1, 1}, "Gone: this address was retired")
	wantReply(t, "unknown address", c.Rcpt("nobody@ours.test", nil), 550, smtp.EnhancedCode{5, 1, 1}, "no such recipient")
	if err := c.Rcpt("drop@ours.test", nil); err != nil {
		t.Fatalf("dropped recipient: %v, want 250", err)
	}
	if err := c.Rcpt("info@ours.test", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sendData(t, c, testMessage); err != nil {
		t.Fatal(err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || strings.Join(got[0].to, ",") != "me@dest.test" {
		t.Fatalf("deliveries %+v: want one, to me@dest.test only", got)
	}

	// A transaction whose only recipient is dropped is answered 250 and
	// delivers nothing.
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("drop@ours.test", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sendData(t, c, testMessage); err != nil {
		t.Fatalf("DATA for a dropped recipient: %v, want 250", err)
	}
	if n := len(e.dest.deliveries()); n != 1 {
		t.Errorf("destination has %d messages, want still 1", n)
	}
}

// One transaction is relayed in session to one destination domain; a
// recipient for another is queued, not deferred with 452 4.5.3, and
// arrives once the first domain has the message.
func TestSecondDestinationDomainQueued(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("info@ours.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("elsewhere@ours.test", nil); err != nil {
		t.Fatalf("second destination domain: %v, want it accepted for the queue", err)
	}
	resp, err := sendData(t, c, testMessage)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.StatusText, "queued as DEST1") {
		t.Errorf("DATA reply %q, want the in-session destination's", resp.StatusText)
	}
	got := waitDeliveries(t, e.dest, 2)
	if len(got) != 2 || got[0].to[0] != "me@dest.test" || got[1].to[0] != "friend@example.org" {
		t.Fatalf("deliveries: %+v", got)
	}
}

// The greeting and EHLO say what the configuration says.
func TestEHLOExtensions(t *testing.T) {
	e := startEnv(t, envOptions{smtp: `max_message_size = "1MiB"`})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "220 mx.ours.test ESMTP") {
		t.Errorf("greeting %q", buf[:n])
	}
	c := e.client(t)
	for ext, param := range map[string]string{
		"SIZE": "1048576", "8BITMIME": "", "SMTPUTF8": "", "PIPELINING": "",
		"ENHANCEDSTATUSCODES": "", "STARTTLS": "",
	} {
		ok, p := c.Extension(ext)
		if !ok || p != param {
			t.Errorf("EHLO extension %s = %v %q, want %q", ext, ok, p, param)
		}
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH is advertised; Sluice is an MX and takes no logins")
	}
	tc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := smtp.NewClientStartTLS(tc, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if _, ok := sc.TLSConnectionState(); !ok {
		t.Error("STARTTLS did not encrypt the session")
	}
	sc.Close()
}

func asSMTP(err error, target **smtp.SMTPError) bool {
	e, ok := err.(*smtp.SMTPError)
	*target = e
	return ok
}

// STARTTLS serves the certificate configured with tls_cert and tls_key,
// and its expiry is a metric.
func TestConfiguredCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, err := certs.SelfSigned("mx.ours.test")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	e := startEnv(t, envOptions{tls: fmt.Sprintf("tls_cert = %q\ntls_key = %q", filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))})

	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	if err := c.Hello("sender.example.org"); err != nil { // the handshake happens here
		t.Fatal(err)
	}
	state, _ := c.TLSConnectionState()
	if len(state.PeerCertificates) == 0 || !bytes.Equal(state.PeerCertificates[0].Raw, cert.Certificate[0]) {
		t.Error("STARTTLS did not present the configured certificate")
	}
	if strings.Contains(e.logs.String(), "self-signed") {
		t.Error("warned about a self-signed certificate although one was configured")
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	key := `sluice_tls_certificate_expiry_timestamp_seconds{name="mx.ours.test"}`
	if got := scrape(t, e)[key]; got != float64(leaf.NotAfter.Unix()) {
		t.Errorf("%s = %v, want the certificate's expiry %d", key, got, leaf.NotAfter.Unix())
	}
}

// A plugin that fails to load is left out of the chain when its
// on_failure is skip: the gateway starts and serves with the others, and
// says what it left out. (sluice check still reports it: cmd/sluice's
// testdata/check/plugin-skip-missing.)
func TestPluginThatFailsToLoadIsSkipped(t *testing.T) {
	e := startEnv(t, envOptions{plugins: fmt.Sprintf(`
[[plugin]]
name = "broken"
path = "no-such-plugin.wasm"
on_failure = "skip"
%s`, routerPlugin(t))})
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("with a skipped plugin: %v, want the router to serve", err)
	}
	if log := e.logs.String(); !strings.Contains(log, "plugin left out of the chain") || !strings.Contains(log, "plugin=broken") {
		t.Errorf("the log does not say which plugin was left out:\n%s", log)
	}
	if _, m := adminDo(t, e, "GET", "/metrics"); !bytes.Contains(m, []byte(`sluice_plugin_load_failures_total{plugin="broken"} 1`)) {
		t.Errorf("metrics lack the load failure:\n%s", m)
	}
}
