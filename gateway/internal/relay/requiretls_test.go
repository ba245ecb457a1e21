package relay

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// requireTLS are the options of a message that asks for REQUIRETLS.
var requireTLS = &smtp.MailOptions{RequireTLS: true}

// beginRequireTLS starts a REQUIRETLS transaction to example.test.
func beginRequireTLS(r *Relay) (*Txn, error) {
	txn, _, err := r.Begin(context.Background(), "example.test", "a@fwd.test", requireTLS, "owner@example.test")
	return txn, err
}

// stsRelay is a relay sending to port that resolves with zone and trusts
// ca, and whose destinations' MTA-STS policies come from a policy host
// serving body for example.test; its TLS results go to results, if any.
func stsRelay(t *testing.T, ca *certs.CA, port int, zone, body string, results *tlsResults) *Relay {
	t.Helper()
	host := startPolicyHost(t, ca, "example.test", body)
	srv := dnstest.Start(t, zone)
	res, err := resolver.New(resolver.Config{Nameservers: []string{srv.Addr()}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	fetcher, err := mtasts.NewFetcher(mtasts.Config{Resolver: res, RootCAs: ca.Pool(), Port: host.port()})
	if err != nil {
		t.Fatal(err)
	}
	return newTestRelay(t, port, res, func(c *Config) {
		c.MTASTS, c.RootCAs = fetcher, ca.Pool()
		if results != nil {
			c.TLSResult = results.record
		}
	})
}

// requireTLSDest is a destination on lns offering REQUIRETLS after
// STARTTLS with serverTLS.
func requireTLSDest(t *testing.T, serverTLS *tls.Config, lns []net.Listener) *destination {
	t.Helper()
	dest := newDestination()
	dest.server.TLSConfig = serverTLS
	dest.server.EnableREQUIRETLS = true
	dest.serve(t, lns...)
	return dest
}

func TestRequireTLSDeliversOverVerifiedTLS(t *testing.T) {
	// The MTA-STS policy (testing mode is enough) vouches for the MX
	// host; its certificate is verified, and it offers REQUIRETLS.
	ca := newCA(t)
	port, lns := listenSamePort(t, "127.0.0.2")
	dest := requireTLSDest(t, issuedTLS(t, ca, "mx.example.test"), lns)
	results := &tlsResults{}
	r := stsRelay(t, ca, port, stsZone("1"), policy("testing", "mx.example.test"), results)
	txn, err := beginRequireTLS(r)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	defer txn.Close()
	if _, err := txn.Data(context.Background(), []byte(testMessage)); err != nil {
		t.Fatalf("Data: %v", err)
	}
	if !txn.TLS() || len(dest.deliveries()) != 1 {
		t.Errorf("TLS() = %v, %d deliveries; want one over TLS", txn.TLS(), len(dest.deliveries()))
	}
	results.check(t, "requiretls verify ok")
}

func TestRequireTLSRefusesUnverifiedCertificate(t *testing.T) {
	// Under a testing-mode policy the mail would go; REQUIRETLS needs
	// the certificate verified, and says so with RFC 8689's 5.7.10.
	ca := newCA(t)
	port, lns := listenSamePort(t, "127.0.0.2")
	dest := requireTLSDest(t, selfSignedTLS(t, "mx.example.test"), lns)
	results := &tlsResults{}
	r := stsRelay(t, ca, port, stsZone("1"), policy("testing", "mx.example.test"), results)
	_, err := beginRequireTLS(r)
	sameReply(t, err, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 10},
		Message: fmt.Sprintf("example.test: REQUIRETLS: mx.example.test[127.0.0.2]:%d: certificate not signed by a trusted authority", port)})
	if n := len(dest.deliveries()); n != 0 {
		t.Errorf("%d deliveries over an unverified connection", n)
	}
	results.check(t, "requiretls verify certificate-not-trusted")
}

func TestRequireTLSNotBelievedInPlaintext(t *testing.T) {
	// A man in the middle strips STARTTLS and advertises REQUIRETLS in
	// plaintext, for an MX host the MTA-STS policy names.
	ca := newCA(t)
	port, lns := listenSamePort(t, "127.0.0.2")
	mitm := &rawMX{ehlo: "250-mx.example.test\r\n250 REQUIRETLS\r\n"}
	mitm.serve(t, lns[0])
	results := &tlsResults{}
	r := stsRelay(t, ca, port, stsZone("1"), policy("testing", "mx.example.test"), results)
	_, err := beginRequireTLS(r)
	sameReply(t, err, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 10},
		Message: fmt.Sprintf("example.test: REQUIRETLS: mx.example.test[127.0.0.2]:%d: STARTTLS not offered", port)})
	for _, line := range mitm.commands() {
		if strings.HasPrefix(line, "MAIL") {
			t.Errorf("sent %q in plaintext", line)
		}
	}
	results.check(t, "requiretls verify starttls-not-supported")
}

func TestRequireTLSNeedsAnAuthenticMX(t *testing.T) {
	// No DNSSEC, no MTA-STS policy: a forged MX record could name any
	// host with a valid certificate, so none is tried (RFC 8689 §4.2.1).
	ca := newCA(t)
	port, lns := listenSamePort(t, "127.0.0.2")
	dest := requireTLSDest(t, issuedTLS(t, ca, "mx.example.test"), lns)
	r := newTestRelay(t, port, dnsFor(t, stsZone("")), func(c *Config) { c.RootCAs = ca.Pool() })
	_, err := beginRequireTLS(r)
	sameReply(t, err, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 10},
		Message: "example.test: REQUIRETLS: no MX host is vouched for by DNSSEC or named by an MTA-STS policy (mx.example.test), and this message requires it"})
	if n := dest.acceptedConns(); n != 0 {
		t.Errorf("%d connections to an MX host nothing vouches for", n)
	}
}

func TestRequireTLSDoesNotReuseUnverifiedConnection(t *testing.T) {
	// A plaintext connection left idle by an ordinary message is not
	// used for a REQUIRETLS one (the pool checks the requirement).
	ca := newCA(t)
	port, lns := listenSamePort(t, "127.0.0.2")
	mx := &rawMX{ehlo: "250-mx.example.test\r\n250 REQUIRETLS\r\n"}
	mx.serve(t, lns[0])
	results := &tlsResults{}
	r := stsRelay(t, ca, port, stsZone("1"), policy("testing", "mx.example.test"), results)
	send(t, r, "example.test", "a@fwd.test", "owner@example.test", testMessage)
	if r.pool.idleCount() != 1 {
		t.Fatalf("%d idle connections, want the plaintext one", r.pool.idleCount())
	}
	_, err := beginRequireTLS(r)
	if reply := asReply(t, err); reply.Code != 550 {
		t.Errorf("reply = %d %q; want 550", reply.Code, reply.Message)
	}
	mails := 0
	for _, line := range mx.commands() {
		if strings.HasPrefix(line, "MAIL") {
			mails++
		}
	}
	if mails != 1 {
		t.Errorf("%d MAIL FROM; want only the ordinary message's", mails)
	}
}
