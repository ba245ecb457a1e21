package gateway_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// DANE through the whole gateway: [dns] dnssec reaches the resolver,
// relay.dane the relay, and the result the client and the metrics. The
// DNS server sets AD for dest.test as a trusted validating resolver would
// (dnstest.Authenticate); mx.dest.test publishes a TLSA record its
// certificate does not match.
func TestDANEMismatchDefersAndCounts(t *testing.T) {
	e := startEnv(t, envOptions{dns: "timeout = \"1s\"\ndnssec = true"})
	e.dns.Authenticate("dest.test.")
	e.addRecords(t, "_25._tcp.mx.dest.test. 300 IN TLSA 3 1 1 "+strings.Repeat("ab", 32)+"\n")
	wantReply(t, "a message to a destination whose certificate matches no TLSA record",
		e.send(t, "alice@example.org", "info@ours.test", testMessage),
		451, smtp.EnhancedCode{4, 7, 5}, "dest.test: DANE: mx.dest.test[127.0.0.1]:"+e.dest.port()+": certificate matches no TLSA record")
	if d := e.dest.deliveries(); len(d) != 0 {
		t.Errorf("%d deliveries, want none", len(d))
	}
	m := scrape(t, e)
	if got := m[`sluice_relay_tls_policy_total{mode="verify",policy="dane",result="tlsa-invalid"}`]; got != 1 {
		t.Errorf("dane tlsa-invalid count = %v, want 1", got)
	}
	if got, ok := m[`sluice_relay_tls_policy_total{mode="verify",policy="dane",result="ok"}`]; !ok || got != 0 {
		t.Errorf("dane ok count = %v (shown %v), want 0 from the start", got, ok)
	}

	// relay.dane = false turns it off at a reload.
	e.editConfig(t, "[relay]\n", "[relay]\ndane = false\n")
	e.reload(t, 2)
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("with relay.dane = false: %v", err)
	}
	if d := e.dest.deliveries(); len(d) != 1 {
		t.Errorf("%d deliveries, want 1", len(d))
	}
}

// A destination whose certificate matches its TLSA record gets the
// message, over TLS, even under tls_security = "verify" with a certificate
// no CA vouches for: DANE-EE by key or whole certificate, and DANE-TA
// naming the destination's own self-signed certificate (which once made
// the relay panic, and the sender get 421 for every attempt).
func TestDANEMatchDelivers(t *testing.T) {
	for _, rec := range []struct{ usage, selector int }{{3, 1}, {3, 0}, {2, 0}} {
		t.Run(fmt.Sprintf("%d %d 1", rec.usage, rec.selector), func(t *testing.T) {
			e := startEnv(t, envOptions{dns: "timeout = \"1s\"\ndnssec = true", relay: `tls_security = "verify"`})
			e.dns.Authenticate("dest.test.")
			block, _ := pem.Decode(e.dest.certPEM)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			data := cert.Raw
			if rec.selector == 1 {
				data = cert.RawSubjectPublicKeyInfo
			}
			e.addRecords(t, fmt.Sprintf("_25._tcp.mx.dest.test. 300 IN TLSA %d %d 1 %x\n", rec.usage, rec.selector, sha256.Sum256(data)))
			if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
				t.Fatalf("send: %v", err)
			}
			if d := e.dest.deliveries(); len(d) != 1 || !d[0].tls {
				t.Errorf("deliveries %+v, want one over TLS", d)
			}
			if got := scrape(t, e)[`sluice_relay_tls_policy_total{mode="verify",policy="dane",result="ok"}`]; got != 1 {
				t.Errorf("dane ok count = %v, want 1", got)
			}
		})
	}
}
