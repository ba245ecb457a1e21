package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/freeport"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// reloadConfig is a gateway whose router rejects old@ours.test with a
// text that names the configuration's version. Nothing here reaches DNS
// or another host: auth is off and no recipient is forwarded.
const reloadConfig = `
hostname = "mx.ours.test"
domains = ["ours.test"]
[smtp]
listen = [%q]
[srs]
secrets = ["test-secret-0123456789abcdef"]
[auth]
enabled = false
[dns]
nameservers = ["127.0.0.1:9"]
[wasm]
cache_dir = %q
[admin]
listen = "127.0.0.1:0"
watch_interval = "1h"   # only the reloads the test asks for
[[plugin]]
name = "router"
path = %q
stages = ["rcpt"]
[[plugin.config.rule]]
match = "old@ours.test"
action = "reject"
code = 550
enhanced = "5.1.1"
text = "Retired in version %d"
`

// The real binary reloads its chain on SIGHUP and on POST /admin/reload,
// and the new plugin configuration answers the next session.
func TestServeReloadsOnSIGHUPAndAdminPost(t *testing.T) {
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	smtpAddr := freeport.Addr(t)
	router := wasmbuild.ForTest(t, "./plugins/router")
	cfgPath := filepath.Join(dir, "gateway.toml")
	writeVersion := func(v int) {
		cfg := fmt.Sprintf(reloadConfig, smtpAddr, wasmbuild.CacheDirForTest(), router, v)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion(1)

	serve := startServe(t, bin, cfgPath)
	// The first line says which build runs, with what makes RSA signatures.
	serve.waitLog(`msg=starting`, fmt.Sprintf("rsa_signer=%q", dkim.RSABackend()))
	serve.waitLog(`msg=listening`)
	line := serve.waitLog(`msg="admin listening"`)
	adminAddr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]

	if got := rcptReply(t, smtpAddr); !strings.Contains(got, "Retired in version 1") {
		t.Fatalf("before any reload: %s", got)
	}

	writeVersion(2)
	serve.signal(syscall.SIGHUP)
	serve.waitLog(`msg="reloading: SIGHUP"`)
	if line := serve.waitLog(`msg="configuration reloaded"`); !strings.Contains(line, "generation=2") {
		t.Errorf("SIGHUP reload logged %q, want generation 2", line)
	}
	if got := rcptReply(t, smtpAddr); !strings.Contains(got, "Retired in version 2") {
		t.Errorf("after SIGHUP: %s", got)
	}

	writeVersion(3)
	resp, err := http.Post("http://"+adminAddr+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		OK    bool `json:"ok"`
		Chain struct {
			Generation int `json:"generation"`
		} `json:"chain"`
	}
	json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if resp.StatusCode != 200 || !answer.OK || answer.Chain.Generation != 3 {
		t.Errorf("POST /admin/reload: %d %+v; want 200, ok, generation 3", resp.StatusCode, answer)
	}
	if got := rcptReply(t, smtpAddr); !strings.Contains(got, "Retired in version 3") {
		t.Errorf("after POST /admin/reload: %s", got)
	}

	serve.stop()
}

// rcptReply opens a session and returns the reply to RCPT TO:<old@ours.test>.
func rcptReply(t *testing.T, addr string) string {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt("old@ours.test", nil)
	var e *smtp.SMTPError
	if !errors.As(err, &e) {
		t.Fatalf("RCPT: %v, want an SMTP reply", err)
	}
	return fmt.Sprintf("%d %v %s", e.Code, e.EnhancedCode, e.Message)
}

// Certificate renewal as a certbot deploy hook does it, with the real
// binary: the files are replaced in place, SIGHUP, and the next STARTTLS
// presents the new certificate while the process keeps running.
func TestServeRenewsCertificateOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	smtpAddr := freeport.Addr(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeTestCert(t, cert, key)
	cfg := fmt.Sprintf(reloadConfig, smtpAddr, wasmbuild.CacheDirForTest(), wasmbuild.ForTest(t, "./plugins/router"), 1)
	cfg = strings.Replace(cfg, "[smtp]\n", fmt.Sprintf("[smtp]\ntls_cert = %q\ntls_key = %q\n", cert, key), 1)
	cfgPath := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := startServe(t, bin, cfgPath)
	serve.waitLog(`msg=listening`)
	if got := tlsSerial(t, smtpAddr); got.Cmp(first) != 0 {
		t.Fatalf("at start STARTTLS presented serial %v, want %v", got, first)
	}

	renewed := writeTestCert(t, cert, key)
	serve.signal(syscall.SIGHUP)
	if line := serve.waitLog(`msg="configuration reloaded"`); !strings.Contains(line, "generation=2") {
		t.Errorf("SIGHUP reload logged %q, want generation 2", line)
	}
	if got := tlsSerial(t, smtpAddr); got.Cmp(renewed) != 0 {
		t.Errorf("after SIGHUP STARTTLS presented serial %v, want the renewed %v", got, renewed)
	}
	serve.stop()
}

// writeTestCert writes a new self-signed certificate and its key, each
// renamed over the old file, and returns the certificate's serial.
func writeTestCert(t *testing.T, certPath, keyPath string) *big.Int {
	t.Helper()
	c, err := certs.SelfSigned("mx.ours.test")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	for path, block := range map[string]*pem.Block{certPath: {Type: "CERTIFICATE", Bytes: c.Certificate[0]}, keyPath: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path+".new", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	parsed, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return parsed.SerialNumber
}

// tlsSerial starts TLS on a new session and returns the serial of the
// certificate presented.
func tlsSerial(t *testing.T, addr string) *big.Int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	state, ok := c.TLSConnectionState()
	if !ok || len(state.PeerCertificates) == 0 {
		t.Fatal("no TLS after STARTTLS")
	}
	return state.PeerCertificates[0].SerialNumber
}
