package gateway_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
)

// writeCert writes a new certificate for mx.ours.test and its key to
// cert.pem and key.pem in dir, replacing them in place as certbot renews,
// and returns the certificate's serial number.
func writeCert(t *testing.T, dir string) *big.Int {
	t.Helper()
	cert, err := certs.SelfSigned("mx.ours.test")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	replaceFile(t, filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	parsed, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return parsed.SerialNumber
}

func certOptions(dir string) string {
	return fmt.Sprintf("tls_cert = %q\ntls_key = %q", filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
}

// startTLS opens a session, says EHLO, starts TLS and returns the client
// with the serial number of the certificate the server presented.
func startTLS(addr string) (*smtp.Client, *big.Int, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, nil, fmt.Errorf("STARTTLS: %w", err)
	}
	if err := c.Hello("sender.example.org"); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("EHLO: %w", err)
	}
	state, ok := c.TLSConnectionState()
	if !ok || len(state.PeerCertificates) == 0 {
		c.Close()
		return nil, nil, fmt.Errorf("no TLS after STARTTLS")
	}
	return c, state.PeerCertificates[0].SerialNumber, nil
}

func serialOf(t *testing.T, addr string) *big.Int {
	t.Helper()
	c, serial, err := startTLS(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	return serial
}

// writeDKIMKey makes a new Ed25519 key, writes it to path and returns its
// TXT record.
func writeDKIMKey(t *testing.T, path string) string {
	t.Helper()
	k, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dkim.MarshalKey(k)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path, b)
	txt, err := dkim.TXTRecord(k)
	if err != nil {
		t.Fatal(err)
	}
	return txt
}

// ourSelectors returns the selectors of our DKIM signatures on a message.
func ourSelectors(msg []byte) []string {
	var sels []string
	for _, v := range fieldValues(unfold(msg), "DKIM-Signature") {
		if regexp.MustCompile(`(^|;)\s*d=ours\.test\s*(;|$)`).MatchString(v) {
			if m := regexp.MustCompile(`(^|;)\s*s=([^;\s]+)`).FindStringSubmatch(v); m != nil {
				sels = append(sels, m[2])
			}
		}
	}
	return sels
}

func unfold(msg []byte) []byte {
	return []byte(strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(string(msg)))
}

func (e *env) lastDelivery(t *testing.T) []byte {
	t.Helper()
	d := e.dest.deliveries()
	if len(d) == 0 {
		t.Fatal("nothing reached the destination")
	}
	return d[len(d)-1].data
}

// reload asks for a reload over HTTP and fails the test unless it made
// generation want.
func (e *env) reload(t *testing.T, want uint64) {
	t.Helper()
	code, a := postReload(t, e)
	if code != http.StatusOK || !a.OK || a.Chain.Generation != want {
		t.Fatalf("POST /admin/reload: %d %+v; want 200 and generation %d", code, a, want)
	}
}

func (e *env) editConfig(t *testing.T, from, to string) {
	t.Helper()
	if !strings.Contains(e.cfgText, from) {
		t.Fatalf("no %q in gateway.toml", from)
	}
	e.cfgText = strings.Replace(e.cfgText, from, to, 1)
	replaceFile(t, e.cfgPath, []byte(e.cfgText))
}

// docs/dkim.md's rotation, without a restart: a new key under a new
// selector is published, gateway.toml switches to it, a reload, and the
// next message is signed with it (checked by our verifiers and dkimpy).
// A reload naming a key file that cannot be read fails at its line and
// the old keys keep signing.
func TestDKIMKeyRotationWithoutRestart(t *testing.T) {
	e := startEnv(t, envOptions{})
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	if got := ourSelectors(e.lastDelivery(t)); strings.Join(got, ",") != "rsa,ed" {
		t.Fatalf("before the rotation signed with %v, want rsa,ed", got)
	}

	newKey := filepath.Join(t.TempDir(), "ed2026.pem")
	oldKeyLines := regexp.MustCompile(`selector = "ed"\nfile = "[^"]*"`).FindString(e.cfgText)
	e.editConfig(t, oldKeyLines, fmt.Sprintf("selector = \"ed2026\"\nfile = %q", newKey))
	code, a := postReload(t, e) // the key file is not there yet
	want := fmt.Sprintf("%s:%d: dkim.key[1]: ", e.cfgPath, lineOf(t, e.cfgText, "ed2026.pem"))
	if code != http.StatusUnprocessableEntity || len(a.Errors) != 1 || !strings.HasPrefix(a.Errors[0], want) {
		t.Errorf("reload with a missing key file: %d %+v; want 422 and one error starting %q", code, a, want)
	}
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	if got := ourSelectors(e.lastDelivery(t)); strings.Join(got, ",") != "rsa,ed" {
		t.Errorf("after a failed reload signed with %v, want the old keys, rsa,ed", got)
	}

	e.publishKey(t, "ed2026", writeDKIMKey(t, newKey))
	delete(e.keys, "ed") // still published, as docs/dkim.md says, but no longer signing
	e.reload(t, 2)
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	msg := e.lastDelivery(t)
	if got := ourSelectors(msg); strings.Join(got, ",") != "rsa,ed2026" {
		t.Errorf("after the rotation signed with %v, want rsa,ed2026", got)
	}
	e.checkForwarded(t, msg, 1)
}

// Certificate renewal, as certbot does it: the certificate and key files
// are replaced in place, the watcher notices, and the next STARTTLS
// presents the new certificate. A key that does not parse fails the
// reload and the current certificate stays.
func TestCertificateRenewalWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	first := writeCert(t, dir)
	e := startEnv(t, envOptions{tls: certOptions(dir), admin: `watch_interval = "100ms"`})
	if got := serialOf(t, e.addr); got.Cmp(first) != 0 {
		t.Fatalf("at start STARTTLS presented serial %v, want %v", got, first)
	}

	renewed := writeCert(t, dir)
	waitFor(t, "the reload", func() bool { return getChain(t, e).Generation == 2 })
	if got := serialOf(t, e.addr); got.Cmp(renewed) != 0 {
		t.Errorf("after the renewal STARTTLS presented serial %v, want the new %v", got, renewed)
	}

	replaceFile(t, filepath.Join(dir, "key.pem"), []byte("not a key"))
	waitFor(t, "the failed reload", func() bool { return scrape(t, e)[`sluice_reloads_total{result="failed"}`] == 1 })
	if got := serialOf(t, e.addr); got.Cmp(renewed) != 0 {
		t.Errorf("after a failed reload STARTTLS presented serial %v, want %v still", got, renewed)
	}
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
}

// SRS secret rotation: with the new secret first and the old one after
// it, new mail is rewritten with the new secret and bounces to addresses
// made with the old one still reach their sender; once the old secret is
// gone (here from secrets_file, re-read at the reload), they are refused.
func TestSRSSecretRotation(t *testing.T) {
	e := startEnv(t, envOptions{})
	old, _ := srs.New(srs.Config{Domain: "ours.test", Secrets: []string{e.secret}})
	oldAddr, err := old.Forward("alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	const newSecret = "new-secret-fedcba9876543210"
	e.editConfig(t, fmt.Sprintf("secrets = [%q]", e.secret), fmt.Sprintf("secrets = [%q, %q]", newSecret, e.secret))
	e.reload(t, 2)

	bounce := "From: MAILER-DAEMON@dest.test\r\nSubject: Undelivered Mail\r\n\r\nIt bounced.\r\n"
	if err := e.send(t, "", oldAddr, bounce); err != nil {
		t.Fatalf("bounce to an address made with the old secret: %v", err)
	}
	if d := e.dest.deliveries(); len(d) != 1 || d[0].to[0] != "alice@example.org" {
		t.Fatalf("the bounce reached %+v, want alice@example.org", d)
	}
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	from := e.dest.deliveries()[1].from
	onlyNew, _ := srs.New(srs.Config{Domain: "ours.test", Secrets: []string{newSecret}})
	if _, err := onlyNew.Reverse(from); err != nil {
		t.Errorf("new mail's sender %s does not verify with the new secret: %v", from, err)
	}
	if _, err := old.Reverse(from); err == nil {
		t.Errorf("new mail's sender %s verifies with the old secret: it was made with the old one", from)
	}

	secrets := filepath.Join(t.TempDir(), "srs-secrets")
	replaceFile(t, secrets, []byte("# the old secret is retired\n"+newSecret+"\n"))
	e.editConfig(t, fmt.Sprintf("secrets = [%q, %q]", newSecret, e.secret), fmt.Sprintf("secrets_file = %q", secrets))
	e.reload(t, 3)
	wantReply(t, "bounce to a retired secret's address", e.send(t, "", oldAddr, bounce), 550, smtp.EnhancedCode{5, 7, 1}, "bad hash")
	if err := e.send(t, "", from, bounce); err != nil {
		t.Errorf("bounce to an address made with the new secret: %v", err)
	}
}

// [scoring] thresholds and [dns] static records apply at a reload.
func TestScoringAndStaticDNSReload(t *testing.T) {
	e := startEnv(t, envOptions{plugins: scoringPlugins(t, "reject = 15.0")})
	// pills scores 10.0, and info@ours.test 0.5 more.
	if err := e.send(t, "alice@example.org", "info@ours.test", subjectMessage("pills")); err != nil {
		t.Fatalf("before the reload, a message scoring 10.5 with reject = 15: %v", err)
	}
	// down.test's MX, 127.0.0.9, has no server.
	wantReply(t, "RCPT to a destination that is down", e.send(t, "alice@example.org", "down@ours.test", testMessage),
		451, smtp.EnhancedCode{4, 4, 1}, "")

	e.editConfig(t, "reject = 15.0", "reject = 10.0")
	e.editConfig(t, "[dns]\n", "[dns]\nstatic = [\"down.test. 300 IN MX 10 mx.dest.test.\"]\n")
	e.reload(t, 2)
	wantReply(t, "a message scoring 10.5 with reject = 10", e.send(t, "alice@example.org", "info@ours.test", subjectMessage("pills")),
		550, smtp.EnhancedCode{5, 7, 1}, "Message scored")
	if err := e.send(t, "alice@example.org", "down@ours.test", testMessage); err != nil {
		t.Fatalf("after a static MX for down.test: %v", err)
	}
	if d := e.dest.deliveries(); len(d) != 2 || d[1].to[0] != "me@down.test" {
		t.Errorf("deliveries %+v; want the second to me@down.test", d)
	}
}

// [log] level applies at a reload.
func TestLogLevelReload(t *testing.T) {
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	e := startEnv(t, envOptions{level: level, admin: "watch_interval = \"1h\"\n[log]\nlevel = \"warn\""})
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.logs.String(), "msg=message") {
		t.Fatal("at level warn the message was logged at info")
	}
	e.editConfig(t, `level = "warn"`, `level = "info"`)
	e.reload(t, 2)
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "msg=message") {
		t.Error("after reloading with level info the message was not logged")
	}
}

// The issue's "key and certificate rotation under load loses no
// message": senders keep forwarding through STARTTLS sessions while the
// certificate and a DKIM key are replaced and the configuration reloaded
// several times. Every message that got 250 reaches the destination,
// signed with a key that verifies; no client sees an error; sessions see
// the certificates of several generations.
func TestKeyAndCertificateRotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	serials := map[string]bool{writeCert(t, dir).String(): true}
	e := startEnv(t, envOptions{tls: certOptions(dir)})

	const workers, rotations = 6, 4
	var (
		mu       sync.Mutex
		accepted []string
		seen     = map[string]bool{} // certificate serials the clients saw
		failures []string
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(accepted) }
	for w := range workers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ids, serial, err := sendTLSSession(e.addr, fmt.Sprintf("w%d-s%d", w, n), 2)
				mu.Lock()
				accepted = append(accepted, ids...)
				if serial != nil {
					seen[serial.String()] = true
				}
				if err != nil {
					failures = append(failures, err.Error())
				}
				mu.Unlock()
			}
		})
	}

	keyLines := regexp.MustCompile(`selector = "ed"\nfile = "[^"]*"`).FindString(e.cfgText)
	for r := range rotations {
		before := count()
		waitFor(t, "mail to flow", func() bool { return count() >= before+20 })
		sel := fmt.Sprintf("ed%d", r)
		file := filepath.Join(dir, sel+".pem")
		e.publishKey(t, sel, writeDKIMKey(t, file))
		newLines := fmt.Sprintf("selector = %q\nfile = %q", sel, file)
		e.editConfig(t, keyLines, newLines)
		keyLines = newLines
		serials[writeCert(t, dir).String()] = true
		e.reload(t, uint64(r+2))
	}
	before := count()
	waitFor(t, "mail after the last reload", func() bool { return count() >= before+20 })
	close(stop)
	wg.Wait()

	if len(failures) > 0 {
		t.Fatalf("%d sessions failed, e.g. %s", len(failures), failures[0])
	}
	records := map[string]string{}
	for sel, txt := range e.keys {
		records[sel+"._domainkey.ours.test"] = txt
	}
	delivered := map[string][]byte{}
	for _, d := range e.dest.deliveries() {
		delivered[headerValue(d.data, "X-Test-Id")] = d.data
	}
	selectors := map[string]int{}
	for _, id := range accepted {
		msg, ok := delivered[id]
		if !ok {
			t.Fatalf("message %s got 250 but never reached the destination", id)
		}
		vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{
			LookupTXT: func(name string) ([]string, error) { return []string{records[name]}, nil },
		})
		if err != nil || len(vs) != 2 || vs[0].Err != nil || vs[1].Err != nil {
			t.Fatalf("message %s: DKIM %v %v, want two valid signatures", id, vs, err)
		}
		for _, s := range ourSelectors(msg) {
			selectors[s]++
		}
	}
	for s := range seen {
		if !serials[s] {
			t.Errorf("a client saw certificate serial %s, which was never written", s)
		}
	}
	if len(seen) < 2 || len(selectors) < 3 {
		t.Errorf("clients saw %d certificates and messages were signed with selectors %v: the test did not span the rotations", len(seen), selectors)
	}
	t.Logf("%d messages, %d certificates seen, selectors %v, 0 failed", len(accepted), len(seen), selectors)
	waitFor(t, "the old generations to close", func() bool { return getChain(t, e).OpenGenerations == 1 })
}

// sendTLSSession starts TLS and sends n messages in one session, each
// tagged with an id; it returns the ids that got 250, the certificate's
// serial and the first error.
func sendTLSSession(addr, name string, n int) (ids []string, serial *big.Int, err error) {
	c, serial, err := startTLS(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	defer c.Close()
	if ids, err = sendNumbered(c, name, n); err != nil {
		return ids, serial, err
	}
	return ids, serial, c.Quit()
}
