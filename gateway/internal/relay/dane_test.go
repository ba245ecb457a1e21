package relay

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/sluice-mail/sluice/gateway/internal/certs"
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
	t       *testing.T
	port    int
	d       *destination
	dns     *dnstest.Server
	dnssec  bool
	results *tlsResults
}

// newDANETest serves zone (daneMX and TLSA lines) with example.test
// authenticated, and a destination with serverTLS (nil: no STARTTLS).
func newDANETest(t *testing.T, zone string, serverTLS *tls.Config) *daneTest {
	t.Helper()
	port, lns := listenSamePort(t, "127.0.0.2")
	dt := &daneTest{t: t, port: port, d: newDestination(), dnssec: true, results: &tlsResults{}}
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
		c.TLSResult = dt.results.record
	}}, adjust...)...)
}

// wantResults checks the TLSResult results, in order.
func (dt *daneTest) wantResults(want ...string) {
	dt.t.Helper()
	dt.results.check(dt.t, want...)
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

// chainTLS is a server config whose certificate for name ca issued, valid
// until notAfter, sent with ca's certificate, as RFC 7672 §3.1.2 asks of
// servers using DANE-TA.
func chainTLS(t *testing.T, ca *certs.CA, name string, notAfter time.Time) *tls.Config {
	t.Helper()
	cert, err := ca.Issue(notAfter, name)
	if err != nil {
		t.Fatal(err)
	}
	cert.Certificate = append(cert.Certificate, ca.Cert().Raw)
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

func TestDANEEEMatchDelivers(t *testing.T) {
	// DANE-EE checks neither name nor dates: a self-signed certificate
	// for another name is fine when its key is the one published.
	srv := selfSignedTLS(t, "not-the-mx.other.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, srv)), srv)
	dt.delivered(dt.relay())
	dt.wantResults("dane verify ok")
}

func TestDANEEEFullCertificateMatchDelivers(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 0, 0, leafOf(t, srv)), srv)
	dt.delivered(dt.relay())
	dt.wantResults("dane verify ok")
}

func TestDANEEEMismatchDefers(t *testing.T) {
	other := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, other)), selfSignedTLS(t, "mx.example.test"))
	dt.refused(dt.relay(), "mx.example.test[127.0.0.2]:PORT: certificate matches no TLSA record")
	if n := dt.d.acceptedConns(); n != 1 {
		t.Errorf("%d connections, want 1: no retry in plaintext", n)
	}
	dt.wantResults("dane verify tlsa-invalid")
}

func TestDANETAChainWithTheMXNameDelivers(t *testing.T) {
	ca := newCA(t)
	dt := newDANETest(t, daneMX+tlsaLine(2, 0, 1, ca.Cert()), chainTLS(t, ca, "mx.example.test", time.Now().Add(time.Hour)))
	dt.delivered(dt.relay())
	dt.wantResults("dane verify ok")
}

func TestDANETAWrongNameDefers(t *testing.T) {
	ca := newCA(t)
	dt := newDANETest(t, daneMX+tlsaLine(2, 0, 1, ca.Cert()), chainTLS(t, ca, "mx.other.test", time.Now().Add(time.Hour)))
	dt.refused(dt.relay(), "mx.example.test[127.0.0.2]:PORT: certificate not valid for mx.example.test (it is for mx.other.test)")
	dt.wantResults("dane verify certificate-host-mismatch")
}

func TestDANETAExpiredCertificateDefers(t *testing.T) {
	// The anchor matches, but the server's certificate has expired:
	// counted and described as RFC 8460 and the WebPKI path name it.
	ca := newCA(t)
	expired := time.Now().Add(-time.Hour).Truncate(time.Second)
	dt := newDANETest(t, daneMX+tlsaLine(2, 0, 1, ca.Cert()), chainTLS(t, ca, "mx.example.test", expired))
	dt.refused(dt.relay(), "mx.example.test[127.0.0.2]:PORT: certificate expired on "+expired.UTC().Format(time.RFC3339))
	dt.wantResults("dane verify certificate-expired")
}

func TestDANETAThatIsTheServerCertificate(t *testing.T) {
	// A self-signed server certificate published as DANE-TA is its own
	// trust anchor: no chain, but its name (and dates) still count. It
	// once panicked in the handshake, taking the sender's session down.
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(2, 0, 1, leafOf(t, srv)), srv)
	dt.delivered(dt.relay())
	dt.wantResults("dane verify ok")

	other := selfSignedTLS(t, "mx.other.test")
	wrong := newDANETest(t, daneMX+tlsaLine(2, 1, 1, leafOf(t, other)), other)
	wrong.refused(wrong.relay(), "mx.example.test[127.0.0.2]:PORT: certificate not valid for mx.example.test (it is for mx.other.test)")
	wrong.wantResults("dane verify certificate-host-mismatch")
}

func TestDANETAOtherAuthorityDefers(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	dt := newDANETest(t, daneMX+tlsaLine(2, 0, 1, other.Cert()), chainTLS(t, ca, "mx.example.test", time.Now().Add(time.Hour)))
	dt.refused(dt.relay(), "mx.example.test[127.0.0.2]:PORT: certificate matches no TLSA record")
	dt.wantResults("dane verify tlsa-invalid")
}

func TestDANEWithoutSTARTTLSDefers(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, srv)), nil)
	dt.refused(dt.relay(), "mx.example.test[127.0.0.2]:PORT: STARTTLS not offered")
	dt.wantResults("dane verify starttls-not-supported")
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
	dt.wantResults("dane verify validation-failure")
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
	dt.wantResults()
}

func TestDANEWithoutDNSSECIgnored(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	other := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, other)), srv)
	dt.dnssec = false
	dt.delivered(dt.relay())
	dt.wantResults()
}

func TestDANEInsecureMXIgnored(t *testing.T) {
	// The MX host's zone is signed, the domain's is not: a forged MX
	// could name any host, so DANE is left to the other TLS settings.
	srv := selfSignedTLS(t, "mx.example.test")
	other := selfSignedTLS(t, "mx.example.test")
	port, lns := listenSamePort(t, "127.0.0.2")
	dt := &daneTest{t: t, port: port, d: newDestination(), dnssec: true, results: &tlsResults{}}
	dt.d.server.TLSConfig = srv
	dt.d.serve(t, lns...)
	dt.dns = dnstest.Start(t, "$TTL 300\n"+daneMX+tlsaLine(3, 1, 1, leafOf(t, other)))
	dt.dns.Authenticate("mx.example.test.")
	dt.delivered(dt.relay())
	dt.wantResults()
}

func TestDANETLSALookupFailureDefers(t *testing.T) {
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX+tlsaLine(3, 1, 1, leafOf(t, srv)), srv)
	dt.dns.Fail("_25._tcp.mx.example.test.", dns.RcodeServerFailure)
	dt.refused(dt.relay(), "mx.example.test: TLSA lookup failed: lookup _25._tcp.mx.example.test. on NS: server misbehaving: SERVFAIL")
	if n := dt.d.acceptedConns(); n != 0 {
		t.Errorf("%d connections to a host whose TLSA lookup failed, want none", n)
	}
	dt.wantResults("dane verify dnssec-invalid")
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
	dt.wantResults("dane encrypt ok")

	plain := newDANETest(t, daneMX+unusable, nil)
	plain.refused(plain.relay(), "mx.example.test[127.0.0.2]:PORT: STARTTLS not offered")
	plain.wantResults("dane encrypt starttls-not-supported")
}

func TestDANEDoesNotReuseAConnectionThatDoesNotMeetIt(t *testing.T) {
	// A connection with the destination's old certificate sits idle
	// when the certificate changes and TLSA records name the new one.
	old, srv := selfSignedTLS(t, "mx.example.test"), selfSignedTLS(t, "mx.example.test")
	var cert atomic.Pointer[tls.Certificate]
	cert.Store(&old.Certificates[0])
	dt := newDANETest(t, daneMX, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return cert.Load(), nil
	}})
	r := dt.relay()
	dt.delivered(r) // no TLSA records yet: opportunistic TLS, connection kept
	cert.Store(&srv.Certificates[0])
	if err := dt.dns.SetRecords("$TTL 300\n" + daneMX + tlsaLine(3, 1, 1, leafOf(t, srv))); err != nil {
		t.Fatal(err)
	}
	dt.delivered(r)
	if n := dt.d.acceptedConns(); n != 2 {
		t.Errorf("%d connections, want 2: the idle one's certificate matches no TLSA record", n)
	}
	dt.delivered(r)
	if n := dt.d.acceptedConns(); n != 2 {
		t.Errorf("%d connections, want 2: the one that matches serves again", n)
	}
	dt.wantResults("dane verify ok", "dane verify ok")
}

func TestDANEReusesAMatchingConnectionMadeBeforeTheRecords(t *testing.T) {
	// The pool checks an idle connection's certificate against the
	// records as a new handshake would: one made before them that
	// matches them is as good as a new one.
	srv := selfSignedTLS(t, "mx.example.test")
	dt := newDANETest(t, daneMX, srv)
	r := dt.relay()
	dt.delivered(r)
	if err := dt.dns.SetRecords("$TTL 300\n" + daneMX + tlsaLine(3, 1, 1, leafOf(t, srv))); err != nil {
		t.Fatal(err)
	}
	dt.delivered(r)
	if n := dt.d.acceptedConns(); n != 1 {
		t.Errorf("%d connections, want 1: the idle one matches the records", n)
	}
	dt.wantResults("dane verify ok")
}

func TestDANENeedsADANEResolver(t *testing.T) {
	_, err := New(Config{Helo: "sluice.test", DANE: true}, plainResolver{})
	if err == nil || !strings.Contains(err.Error(), "DANE") {
		t.Errorf("New with DANE and a resolver that cannot tell secure answers: %v, want an error", err)
	}
}

// plainResolver is a Resolver that is no DANEResolver.
type plainResolver struct{ Resolver }

// stsWithDANE is an MTA-STS setup whose zone example.test is also
// authenticated, with tlsa added to it, and a relay with DANE on.
func stsWithDANE(t *testing.T, destTLS func(*certs.CA) *tls.Config, body string, tlsa func(*stsSetup) string) *stsSetup {
	t.Helper()
	s := newSTSSetup(t, destTLS, "1", body, func(c *Config) { c.DANE = true })
	s.dns.Authenticate("example.test.")
	if err := s.dns.SetRecords(stsZone("1") + tlsa(s)); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDANEOverridesMTASTS(t *testing.T) {
	// The enforced policy names another MX host, and no CA vouches for
	// the certificate; the TLSA record does, and takes precedence.
	var srv *tls.Config
	s := stsWithDANE(t, func(*certs.CA) *tls.Config { srv = selfSignedTLS(t, "mx.example.test"); return srv },
		policy("enforce", "mx9.example.test"), func(*stsSetup) string { return tlsaLine(3, 1, 1, leafOf(t, srv)) })
	if txn := s.deliver(t); !txn.TLS() {
		t.Error("delivered without TLS")
	}
	s.results.check(t, "dane verify ok")
}

func TestMTASTSDoesNotOverrideFailingDANE(t *testing.T) {
	// The certificate is valid for the MX name from a trusted CA, as the
	// enforced policy asks, but matches no TLSA record (RFC 8461 §2).
	s := stsWithDANE(t, certFor(t, "mx.example.test"), policy("enforce", "mx.example.test"),
		func(*stsSetup) string { return tlsaLine(3, 1, 1, leafOf(t, selfSignedTLS(t, "mx.example.test"))) })
	_, err := s.begin(t)
	sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: fmt.Sprintf("example.test: DANE: mx.example.test[127.0.0.2]:%d: certificate matches no TLSA record", s.relay.cfg.Port)})
	if n := len(s.dest.deliveries()); n != 0 {
		t.Errorf("%d deliveries", n)
	}
	s.results.check(t, "dane verify tlsa-invalid")
}

func TestDANEWithOnlyUnusableRecordsLeavesMTASTSEnforced(t *testing.T) {
	// Unusable records ask for TLS alone; the enforced policy asks for
	// more, and stays the requirement.
	s := stsWithDANE(t, selfSigned(t), policy("enforce", "mx.example.test"),
		func(*stsSetup) string { return tlsaLine(1, 1, 1, leafOf(t, selfSignedTLS(t, "mx.example.test"))) })
	_, err := s.begin(t)
	if reply := asReply(t, err); reply.Code != 451 || !strings.Contains(reply.Message, "MTA-STS policy (enforce)") {
		t.Errorf("reply = %d %q; want the enforced policy's 451", reply.Code, reply.Message)
	}
	s.results.check(t, "mta-sts enforce certificate-not-trusted")
}
