package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
)

// untrustedCAFile is a tls_ca_file that trusts no destination: another
// CA's certificate.
func untrustedCAFile(t *testing.T) string {
	t.Helper()
	ca, err := certs.NewCA("Some Other CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile
}

// trustDest makes caFile (e's tls_ca_file) trust e.dest's certificate,
// and reloads the gateway so that it reads it.
func trustDest(t *testing.T, e *env, caFile string) {
	t.Helper()
	if err := os.WriteFile(caFile, e.dest.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// [relay] tls_security = "verify": a destination whose certificate is not
// trusted gets nothing, and the sender a 451 naming the setting and why;
// once tls_ca_file trusts it (and a reload reads it), the message goes,
// over TLS. Both are counted.
func TestRelayTLSSecurityVerify(t *testing.T) {
	caFile := untrustedCAFile(t)
	e := startEnv(t, envOptions{relay: fmt.Sprintf("tls_security = \"verify\"\ntls_ca_file = %q", caFile)})
	err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", testMessage)
	wantReply(t, "untrusted destination", err, 451, smtp.EnhancedCode{4, 7, 5},
		fmt.Sprintf("dest.test: tls_security verify: mx.dest.test[127.0.0.1]:%s: certificate not signed by a trusted authority", e.dest.port()))
	if n := len(e.dest.deliveries()); n != 0 {
		t.Errorf("%d deliveries to an untrusted destination", n)
	}
	if n := scrape(t, e)[`sluice_relay_tls_policy_total{mode="verify",policy="tls_security",result="certificate-not-trusted"}`]; n != 1 {
		t.Errorf("certificate-not-trusted counted %v times, want 1", n)
	}

	trustDest(t, e, caFile)
	if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("with the destination trusted: %v", err)
	}
	if got := e.dest.deliveries(); len(got) != 1 || !got[0].tls {
		t.Errorf("deliveries %+v; want one over TLS", got)
	}
	if n := scrape(t, e)[`sluice_relay_tls_policy_total{mode="verify",policy="tls_security",result="ok"}`]; n != 1 {
		t.Errorf("ok counted %v times, want 1", n)
	}
}
