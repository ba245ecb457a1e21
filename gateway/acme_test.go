package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/freeport"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
	"github.com/sluice-mail/sluice/gateway/internal/pebbletest"
)

// starttlsChain does a STARTTLS handshake with the gateway at addr,
// asking for sni ("": none, as most sending servers), and returns the
// chain it presented once it verifies for mx.ours.test against roots.
func starttlsChain(addr, sni string, roots *x509.CertPool) ([]*x509.Certificate, error) {
	c, err := smtp.DialStartTLS(addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Noop(); err != nil { // the handshake happens with the first command
		return nil, err
	}
	state, ok := c.TLSConnectionState()
	if !ok || len(state.PeerCertificates) == 0 {
		return nil, fmt.Errorf("no TLS")
	}
	chain := state.PeerCertificates
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err = chain[0].Verify(x509.VerifyOptions{DNSName: "mx.ours.test", Roots: roots, Intermediates: inter})
	return chain, err
}

// The "certificates without effort", end to end against Pebble:
// the gateway starts at once, with STARTTLS on a self-signed stand-in;
// it gets its hostname's certificate in the background, answering
// pebble's TLS-ALPN-01 validation on its HTTPS listener; STARTTLS then
// presents a certificate that verifies to pebble's root, stored 0600; a
// reload that publishes an MTA-STS policy gets the policy host's
// certificate too; and a renewal is served by the next handshake,
// without a restart.
func TestACMEIssuanceAndRenewalWithPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pebble")
	}
	dns := dnstest.Start(t, `
mx.ours.test.      60 IN A 127.0.0.1
mta-sts.ours.test. 60 IN A 127.0.0.1
`)
	httpsPort := freeport.Port(t)
	// Certificates live 20 seconds and are renewed 15 seconds before
	// they expire, so one is renewed about 5 seconds after it is issued.
	p := pebbletest.Start(t, dns, httpsPort, 20*time.Second)
	dataDir := t.TempDir()
	e := startEnv(t, envOptions{
		tls: "# the certificate comes from ACME",
		top: fmt.Sprintf("data_dir = %q", dataDir),
		sections: fmt.Sprintf(`
[tls]
acme = true
acme_email = "postmaster@ours.test"
acme_directory = %q
acme_ca_file = %q
acme_renew_before = "15s"
[https]
listen = ["127.0.0.1:%d"]
`, p.Directory, p.CAFile, httpsPort),
	})

	// Mail flows at once: STARTTLS with the stand-in before a
	// certificate can be there (pebble has not validated anything yet).
	if err := sendMail(t, tlsClient(t, e.addr), "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("mail over STARTTLS at start: %v", err)
	}

	var chain []*x509.Certificate
	waitFor(t, "STARTTLS to present a certificate from pebble", func() bool {
		var err error
		chain, err = starttlsChain(e.addr, "mx.ours.test", p.Roots)
		return err == nil
	})
	leaf := chain[0]
	t.Logf("issued: serial %x, not after %s", leaf.SerialNumber, leaf.NotAfter)

	// A reload that publishes an MTA-STS policy gets the policy host's
	// certificate, and serves the policy over HTTPS with it.
	if _, _, _, err := httpsGet(t, e.gw.HTTPSAddrs()[0], "GET", "mta-sts.ours.test", mtasts.Path, nil); err == nil {
		t.Error("mta-sts.ours.test is served before a policy is published")
	}
	if err := os.WriteFile(e.cfgPath, []byte(e.cfgText+"[mta_sts]\nmode = \"enforce\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	var body string
	waitFor(t, "the policy host's certificate", func() bool {
		code, _, b, err := httpsGet(t, e.gw.HTTPSAddrs()[0], "GET", "mta-sts.ours.test", mtasts.Path, p.Roots)
		body = b
		return err == nil && code == 200
	})
	if want := "version: STSv1\r\nmode: enforce\r\nmx: mx.ours.test\r\nmax_age: 604800\r\n"; body != want {
		t.Errorf("policy %q, want %q", body, want)
	}

	// A name that is not ours gets no certificate: no handshake makes the
	// gateway ask the CA for one.
	if _, _, _, err := httpsGet(t, e.gw.HTTPSAddrs()[0], "GET", "other.ours.test", mtasts.Path, nil); err == nil {
		t.Error("a handshake for other.ours.test succeeded")
	}

	// On disk, in autocert's layout (what sluice doctor reads), private.
	acmeDir := filepath.Join(dataDir, "acme")
	if _, err := os.Stat(filepath.Join(acmeDir, "other.ours.test")); err == nil {
		t.Error("a certificate was stored for other.ours.test")
	}
	for _, name := range []string{"mx.ours.test", "mta-sts.ours.test", "acme_account+key"} {
		fi, err := os.Stat(filepath.Join(acmeDir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(acmeDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v %v, want a directory of mode 0700", acmeDir, fi.Mode(), err)
	}
	stored, _ := os.ReadFile(filepath.Join(acmeDir, "mx.ours.test"))
	if !bytes.Contains(stored, []byte("PRIVATE KEY")) || !bytes.Contains(stored, []byte("CERTIFICATE")) {
		t.Errorf("the stored entry is not a key and its chain:\n%s", stored)
	}

	// A renewal, served by the next handshake.
	waitFor(t, "STARTTLS to present a renewed certificate", func() bool {
		c, err := starttlsChain(e.addr, "mx.ours.test", p.Roots)
		if err != nil {
			t.Logf("STARTTLS: %v", err)
			return false
		}
		return c[0].SerialNumber.Cmp(leaf.SerialNumber) != 0
	})
	renewed, err := starttlsChain(e.addr, "", p.Roots)
	if err != nil {
		t.Errorf("a handshake without a server name: %v", err)
	} else if !renewed[0].NotAfter.After(leaf.NotAfter) {
		t.Errorf("renewed certificate expires at %s, not after the first (%s)", renewed[0].NotAfter, leaf.NotAfter)
	}

	m := scrape(t, e)
	expiry := m[`sluice_tls_certificate_expiry_timestamp_seconds{name="mx.ours.test"}`]
	if expiry <= float64(leaf.NotAfter.Unix()) {
		t.Errorf("expiry gauge %v, want past the first certificate's %d", expiry, leaf.NotAfter.Unix())
	}
	if _, ok := m[`sluice_tls_certificate_expiry_timestamp_seconds{name="mta-sts.ours.test"}`]; !ok {
		t.Error("no expiry for mta-sts.ours.test")
	}
	_, metrics := adminDo(t, e, "GET", "/metrics")
	served := servedMetrics(t, string(metrics))
	documented, _ := documentedMetrics(t)
	name := "sluice_tls_certificate_expiry_timestamp_seconds"
	if d, s := documented[name], served[name]; d.typ != s.typ || strings.Join(d.labels, ",") != strings.Join(s.labels, ",") {
		t.Errorf("%s is documented as %+v, served as %+v", name, d, s)
	}
	for _, want := range []string{"acme: certificate in use", "acme: certificate stored", "name=mx.ours.test"} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// A CA that cannot be reached costs nothing but the certificate: mail
// flows over STARTTLS with the stand-in, and the failure is logged and
// counted, to be retried.
func TestACMEFailureLeavesStandIn(t *testing.T) {
	dataDir := t.TempDir()
	e := startEnv(t, envOptions{
		tls: "# the certificate comes from ACME",
		top: fmt.Sprintf("data_dir = %q", dataDir),
		sections: fmt.Sprintf(`
[tls]
acme = true
acme_directory = "https://127.0.0.1:%d/dir"
[https]
listen = ["127.0.0.1:0"]
`, freeport.Port(t)),
	})
	waitFor(t, "the failure to be counted", func() bool {
		return scrape(t, e)[`sluice_acme_failures_total{name="mx.ours.test"}`] >= 1
	})
	if !strings.Contains(e.logs.String(), "acme: cannot get a certificate; retrying") {
		t.Errorf("the failure is not logged:\n%s", e.logs.String())
	}
	c := tlsClient(t, e.addr)
	if err := sendMail(t, c, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("mail over STARTTLS with the stand-in: %v", err)
	}
	state, _ := c.TLSConnectionState()
	if len(state.PeerCertificates) == 0 || state.PeerCertificates[0].Subject.CommonName != "mx.ours.test" {
		t.Errorf("STARTTLS presented %v, want the self-signed stand-in for mx.ours.test", state.PeerCertificates)
	}
	if _, ok := scrape(t, e)[`sluice_tls_certificate_expiry_timestamp_seconds{name="mx.ours.test"}`]; ok {
		t.Error("an expiry is reported for the stand-in")
	}

	// Both metrics as docs/operations.md has them.
	_, body := adminDo(t, e, "GET", "/metrics")
	served := servedMetrics(t, string(body))
	documented, _ := documentedMetrics(t)
	for _, name := range []string{"sluice_acme_failures_total"} {
		if d, s := documented[name], served[name]; d.typ != s.typ || strings.Join(d.labels, ",") != strings.Join(s.labels, ",") {
			t.Errorf("%s is documented as %+v, served as %+v", name, d, s)
		}
	}
}
