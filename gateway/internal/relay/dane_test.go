package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"maps"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// daneMX is example.test with one MX host on 127.0.0.2. It has no SOA, so
// that negative answers are not cached and a test can add records.
const daneMX = `
example.test.    IN MX 10 mx.example.test.
mx.example.test. IN A 127.0.0.2
`

// daneTest is a DANE destination: a go-smtp server on 127.0.0.2 and a
// relay whose resolver believes the AD bit of a dnstest server that sets
// it for the zones the test authenticates (a stub of a trusted validating
// resolver, see dnstest.Authenticate).
type daneTest struct {
	t      *testing.T
	port   int
	d      *destination
	dns    *dnstest.Server
	dnssec bool

	mu      sync.Mutex
	results map[string]int // "policy/result" -> count
}

// newDANETest serves zone (daneMX and TLSA lines) with example.test
// authenticated, and a destination with serverTLS (nil: no STARTTLS).
func newDANETest(t *testing.T, zone string, serverTLS *tls.Config) *daneTest {
	t.Helper()
	port, lns := listenSamePort(t, "127.0.0.2")
	dt := &daneTest{t: t, port: port, d: newDestination(), dnssec: true, results: map[string]int{}}
	dt.d.server.TLSConfig = serverTLS
	dt.d.serve(t, lns...)
	dt.dns = dnstest.Start(t, "$TTL 300\n"+zone)
	dt.dns.Authenticate("example.test.")
	return dt
}

// relay builds the relay, with DANE on.
func (dt *daneTest) relay(adjust ...func(*Config)) *Relay {
	res, err := resolver.New(resolver.Config{Nameservers: []string{dt.dns.Addr()}, Attempts: 1, DNSSEC: dt.dnssec})
	if err != nil {
		dt.t.Fatal(err)
	}
	return newTestRelay(dt.t, dt.port, res, append([]func(*Config){func(c *Config) {
		c.DANE = true
		c.TLSPolicy = func(policy, result string) {
			dt.mu.Lock()
			dt.results[policy+"/"+result]++
			dt.mu.Unlock()
		}
	}}, adjust...)...)
}

// wantResults checks the counts of TLSPolicy results.
func (dt *daneTest) wantResults(want map[string]int) {
	dt.t.Helper()
	dt.mu.Lock()
	defer dt.mu.Unlock()
	if !maps.Equal(dt.results, want) {
		dt.t.Errorf("TLS policy results = %v, want %v", dt.results, want)
	}
}

// refused checks that Begin gave the DANE deferral with detail (PORT
// stands for the destination's port, NS for the nameserver's address),
// and that nothing was delivered.
func (dt *daneTest) refused(r *Relay, detail string) {
	dt.t.Helper()
	_, _, err := r.Begin(context.Background(), "example.test", "a@fwd.test", nil, "owner@real.test")
	sameReply(dt.t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: "example.test: DANE: " + strings.NewReplacer("PORT", fmt.Sprint(dt.port), "NS", dt.dns.Addr()).Replace(detail)})
	if got := dt.d.deliveries(); len(got) != 0 {
		dt.t.Errorf("delivered %d messages, want none", len(got))
	}
}

// delivered sends a message and checks that it arrived over TLS.
func (dt *daneTest) delivered(r *Relay) {
	dt.t.Helper()
	txn, _ := send(dt.t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	if got := dt.d.deliveries(); len(got) == 0 || !txn.TLS() || !got[len(got)-1].tls {
		dt.t.Errorf("TLS() = %v, deliveries %v; want the message delivered over TLS", txn.TLS(), got)
	}
}

// tlsaLine is a TLSA record for mx.example.test naming cert.
func tlsaLine(usage, selector, matching uint8, cert *x509.Certificate) string {
	data := cert.Raw
	if selector == 1 {
		data = cert.RawSubjectPublicKeyInfo
	}
	if matching == 1 {
		sum := sha256.Sum256(data)
		data = sum[:]
	}
	return fmt.Sprintf("_25._tcp.mx.example.test. IN TLSA %d %d %d %x\n", usage, selector, matching, data)
}

// leafOf is the certificate a server config presents.
func leafOf(t *testing.T, c *tls.Config) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(c.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// testCA is a certificate authority for DANE-TA.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test DANE-TA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert, key}
}

// serverTLS is a server config whose certificate for name the CA issued,
// sent with the CA's certificate, as RFC 7672 §3.1.2 asks of servers.
func (ca *testCA) serverTLS(t *testing.T, name string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}}}
}

func TestDANEEEMatchDelivers(t *testing.T) {
	// DANE-EE checks neither name nor dates: a self-signed certificate
	// for another name is fine when its key is the one published.
	srv := selfSignedTLS(t, "not-the-mx.other.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, srv)), srv)
	dt.delivered(dt.relay())
	dt.wantResults(map[string]int{"dane/verified": 1})
}

func TestDANEEEFullCertificateMatchDelivers(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 0, 0, leafOf(t, srv)), srv)
	dt.delivered(dt.relay())
	dt.wantResults(map[string]int{"dane/verified": 1})
}

func TestDANEEEMismatchDefers(t *testing.T) {
	other := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, other)), selfSignedTLS(t, "mx.example.test"))
	dt.refused(dt.relay(), "mx.example.test[127.0.0.2]:PORT: certificate matches no TLSA record")
	if n := dt.d.acceptedConns(); n != 1 {
		t.Errorf("%d connections, want 1: no retry in plaintext", n)
	}
	dt.wantResults(map[string]int{"dane/mismatch": 1})
}

func TestDANETAChainWithTheMXNameDelivers(t *testing.T) {
	ca := newTestCA(t)
	dt := newDANETest(t, daneMX+tlsaLine(2, 0, 1, ca.cert), ca.serverTLS(t, "mx.example.test"))
	dt.delivered(dt.relay())
	dt.wantResults(map[string]int{"dane/verified": 1})
}

func TestDANETAWrongNameDefers(t *testing.T) {
	ca := newTestCA(t)
	dt := newDANETest(t, daneMX+tlsaLine(2, 0, 1, ca.cert), ca.serverTLS(t, "mx.other.test"))
	dt.refused(dt.relay(), "mx.example.test[127.0.0.2]:PORT: DANE-TA: certificate is not valid for mx.example.test")
	dt.wantResults(map[string]int{"dane/mismatch": 1})
}

func TestDANETAOtherAuthorityDefers(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	dt := newDANETest(t, daneMX+tlsaLine(2, 0, 1, other.cert), ca.serverTLS(t, "mx.example.test"))
	dt.refused(dt.relay(), "mx.example.test[127.0.0.2]:PORT: certificate matches no TLSA record")
	dt.wantResults(map[string]int{"dane/mismatch": 1})
}

func TestDANEWithoutSTARTTLSDefers(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, srv)), nil)
	dt.refused(dt.relay(), "mx.example.test[127.0.0.2]:PORT: destination does not offer STARTTLS")
	dt.wantResults(map[string]int{"dane/no_starttls": 1})
}

func TestDANEHandshakeFailureDefersWithoutPlaintext(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, srv)), &tls.Config{}) // offers STARTTLS, has no certificate
	_, _, err := dt.relay().Begin(context.Background(), "example.test", "a@fwd.test", nil, "owner@real.test")
	reply := asReply(t, err)
	prefix := fmt.Sprintf("example.test: DANE: mx.example.test[127.0.0.2]:%d: TLS handshake failed: ", dt.port)
	if reply.Code != 451 || reply.EnhancedCode != (smtp.EnhancedCode{4, 7, 5}) || !strings.HasPrefix(reply.Message, prefix) {
		t.Errorf("reply = %d %v %q, want 451 4.7.5 %q...", reply.Code, reply.EnhancedCode, reply.Message, prefix)
	}
	if n := dt.d.acceptedConns(); n != 1 || len(dt.d.deliveries()) != 0 {
		t.Errorf("%d connections, %d deliveries; want 1 and none: no retry in plaintext", n, len(dt.d.deliveries()))
	}
	dt.wantResults(map[string]int{"dane/tls_failed": 1})
}

func TestDANEInsecureTLSAIgnored(t *testing.T) {
	// The TLSA name is an alias into a zone the resolver cannot
	// validate: the records are insecure and do not count (RFC 7672 §2.2).
	srv := selfSignedTLS(t, "mx.example.test")
	other := selfSignedTLS(t, "mx.example.test")
	zone := daneMX + "_25._tcp.mx.example.test. IN CNAME tlsa.unsigned.test.\n" +
		strings.Replace(tlsaLine(3, 1, 1, leafOf(t, other)), "_25._tcp.mx.example.test.", "tlsa.unsigned.test.", 1)
	dt := newDANETest(t, zone, srv)
	dt.delivered(dt.relay())
	dt.wantResults(map[string]int{})
}

func TestDANEWithoutDNSSECIgnored(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	other := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, other)), srv)
	dt.dnssec = false
	dt.delivered(dt.relay())
	dt.wantResults(map[string]int{})
}

func TestDANEInsecureMXIgnored(t *testing.T) {
	// The MX host's zone is signed, the domain's is not: a forged MX
	// could name any host, so DANE is left to the other TLS settings.
	srv := selfSignedTLS(t, "mx.example.test")
	other := selfSignedTLS(t, "mx.example.test")
	port, lns := listenSamePort(t, "127.0.0.2")
	dt := &daneTest{t: t, port: port, d: newDestination(), dnssec: true, results: map[string]int{}}
	dt.d.server.TLSConfig = srv
	dt.d.serve(t, lns...)
	dt.dns = dnstest.Start(t, "$TTL 300\n"+daneMX+tlsaLine(3, 1, 1, leafOf(t, other)))
	dt.dns.Authenticate("mx.example.test.")
	dt.delivered(dt.relay())
	dt.wantResults(map[string]int{})
}

func TestDANETLSALookupFailureDefers(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, srv)), srv)
	dt.dns.Fail("_25._tcp.mx.example.test.", dns.RcodeServerFailure)
	dt.refused(dt.relay(), "mx.example.test: TLSA lookup failed: lookup _25._tcp.mx.example.test. on NS: server misbehaving: SERVFAIL")
	if n := dt.d.acceptedConns(); n != 0 {
		t.Errorf("%d connections to a host whose TLSA lookup failed, want none", n)
	}
	dt.wantResults(map[string]int{"dane/lookup_failed": 1})
}

func TestDANEOnlyUnusableRecordsRequireTLS(t *testing.T) {
	// PKIX-TA(0) and PKIX-EE(1) are unusable in SMTP (RFC 7672 §3.1.3),
	// and so is a DANE-EE record with an unknown matching type. With no
	// usable record, TLS is still required, without authentication
	// (§2.2): the certificate that matches none of them is fine.
	other := leafOf(t, selfSignedTLS(t, "mx.example.test"))
	unusable := tlsaLine(0, 1, 1, other) + tlsaLine(1, 1, 1, other) +
		"_25._tcp.mx.example.test. IN TLSA 3 1 9 00ff\n"
	dt := newDANETest(t, daneMX+unusable, selfSignedTLS(t, "mx.example.test"))
	dt.delivered(dt.relay())
	dt.wantResults(map[string]int{"dane/unauthenticated": 1})

	plain := newDANETest(t, daneMX+unusable, nil)
	plain.refused(plain.relay(), "mx.example.test[127.0.0.2]:PORT: destination does not offer STARTTLS")
	plain.wantResults(map[string]int{"dane/no_starttls": 1})
}

func TestDANEDoesNotReuseAConnectionMadeWithoutIt(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX, srv)
	r := dt.relay()
	dt.delivered(r) // no TLSA records yet: opportunistic TLS, connection kept
	if err := dt.dns.SetRecords("$TTL 300\n" + daneMX + tlsaLine(3, 1, 1, leafOf(t, srv))); err != nil {
		t.Fatal(err)
	}
	dt.delivered(r)
	if n := dt.d.acceptedConns(); n != 2 {
		t.Errorf("%d connections, want 2: the idle one was not made under DANE", n)
	}
	dt.delivered(r)
	if n := dt.d.acceptedConns(); n != 2 {
		t.Errorf("%d connections, want 2: the one made under DANE serves again", n)
	}
	dt.wantResults(map[string]int{"dane/verified": 1})
}

func TestDANENeedsADANEResolver(t *testing.T) {
	_, err := New(Config{Helo: "sluice.test", DANE: true}, plainResolver{})
	if err == nil || !strings.Contains(err.Error(), "DANE") {
		t.Errorf("New with DANE and a resolver that cannot tell secure answers: %v, want an error", err)
	}
}

// plainResolver is a Resolver that is no DANEResolver.
type plainResolver struct{ Resolver }
