package relay

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// newCA is a test CA, standing in for the public ones.
func newCA(t testing.TB) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA("Sluice Test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issuedTLS is a server config with a certificate from ca for names.
func issuedTLS(t testing.TB, ca *certs.CA, names ...string) *tls.Config {
	t.Helper()
	cert, err := ca.Issue(time.Now().Add(time.Hour), names...)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// tlsResults records what the relay tells Config.TLSResult.
type tlsResults struct {
	mu  sync.Mutex
	got []string // "policy mode result"
}

// record keeps the results under a policy; those of sessions under
// none are for TLS reports (TestTLSCheckDetails).
func (r *tlsResults) record(c TLSCheck) {
	if c.Policy == "" {
		return
	}
	r.mu.Lock()
	r.got = append(r.got, c.Policy+" "+c.Mode+" "+c.Result)
	r.mu.Unlock()
}

func (r *tlsResults) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// checkResults asserts the results told so far.
func (r *tlsResults) check(t *testing.T, want ...string) {
	t.Helper()
	if got := r.list(); !slices.Equal(got, want) {
		t.Errorf("TLS results = %q, want %q", got, want)
	}
}

// policyHost is a real HTTPS server on loopback serving an MTA-STS
// policy, as https://mta-sts.<domain> would on port 443, with a
// certificate for that name from a test CA.
type policyHost struct {
	srv     *httptest.Server
	fetches atomic.Int32

	mu     sync.Mutex
	status int
	body   string
}

func startPolicyHost(t testing.TB, ca *certs.CA, domain, body string) *policyHost {
	t.Helper()
	h := &policyHost{status: http.StatusOK, body: body}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.fetches.Add(1)
		h.mu.Lock()
		status, body := h.status, h.body
		h.mu.Unlock()
		if req.URL.Path != mtasts.Path {
			status = http.StatusNotFound
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	h.srv.TLS = issuedTLS(t, ca, "mta-sts."+domain)
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

// serve changes what the host answers.
func (h *policyHost) serve(status int, body string) {
	h.mu.Lock()
	h.status, h.body = status, body
	h.mu.Unlock()
}

func (h *policyHost) port() int { return h.srv.Listener.Addr().(*net.TCPAddr).Port }

func policy(mode string, mx ...string) string {
	text := "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, m := range mx {
		text += "mx: " + m + "\r\n"
	}
	return text + "max_age: 86400\r\n"
}

// stsZone is example.test with its MX at 127.0.0.2, its policy host at
// 127.0.0.1, and an MTA-STS record with id (none if ""), uncached (TTL 0)
// so that tests can change it.
func stsZone(id string) string {
	zone := "$TTL 300\n" +
		"example.test. IN MX 10 mx.example.test.\n" +
		"mx.example.test. IN A 127.0.0.2\n" +
		"mta-sts.example.test. IN A 127.0.0.1\n"
	if id != "" {
		zone += fmt.Sprintf("_mta-sts.example.test. 0 IN TXT \"v=STSv1; id=%s\"\n", id)
	}
	return zone
}

// stsSetup is a destination MX, its policy host, DNS for both, and a relay
// that honours MTA-STS and trusts the test CA.
type stsSetup struct {
	ca      *certs.CA
	dest    *destination
	host    *policyHost
	dns     *dnstest.Server
	relay   *Relay
	results *tlsResults
	fetched atomic.Int32 // fetches the fetcher reports, failed or not
}

// newSTSSetup starts it all: the destination's certificate comes from
// destTLS (nil: no STARTTLS), the policy host serves body, the TXT record
// has id.
func newSTSSetup(t *testing.T, destTLS func(*certs.CA) *tls.Config, id, body string, adjust ...func(*Config)) *stsSetup {
	t.Helper()
	s := &stsSetup{ca: newCA(t), results: &tlsResults{}}
	port, lns := listenSamePort(t, "127.0.0.2")
	s.dest = newDestination()
	if destTLS != nil {
		s.dest.server.TLSConfig = destTLS(s.ca)
	}
	s.dest.serve(t, lns...)
	s.host = startPolicyHost(t, s.ca, "example.test", body)
	s.dns = dnstest.Start(t, stsZone(id))
	// DNSSEC on: answers are secure only for the zones a test
	// authenticates, for DANE's precedence over MTA-STS.
	res, err := resolver.New(resolver.Config{Nameservers: []string{s.dns.Addr()}, Attempts: 1, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	fetcher, err := mtasts.NewFetcher(mtasts.Config{
		Resolver: res,
		RootCAs:  s.ca.Pool(),
		Port:     s.host.port(),
		Recheck:  time.Nanosecond, // every transaction looks at the TXT record
		Fetched:  func(error) { s.fetched.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.relay = newTestRelay(t, port, res, append([]func(*Config){func(c *Config) {
		c.MTASTS = fetcher
		c.RootCAs = s.ca.Pool()
		c.TLSResult = s.results.record
	}}, adjust...)...)
	return s
}

// begin starts a transaction to example.test.
func (s *stsSetup) begin(t *testing.T) (*Txn, error) {
	t.Helper()
	txn, _, err := s.relay.Begin(context.Background(), "example.test", "a@fwd.test", nil, "owner@example.test")
	return txn, err
}

// deliver sends a message, failing the test if it is not delivered.
func (s *stsSetup) deliver(t *testing.T) *Txn {
	t.Helper()
	txn, _ := send(t, s.relay, "example.test", "a@fwd.test", "owner@example.test", testMessage)
	return txn
}

// waitFetches waits until the fetcher has reported n fetches.
func (s *stsSetup) waitFetches(t *testing.T, n int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.fetched.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d policy fetches, want %d", s.fetched.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// certFor gives the destination a certificate from the test CA for names.
func certFor(t testing.TB, names ...string) func(*certs.CA) *tls.Config {
	return func(ca *certs.CA) *tls.Config { return issuedTLS(t, ca, names...) }
}

// selfSigned gives the destination a certificate no CA vouches for.
func selfSigned(t testing.TB) func(*certs.CA) *tls.Config {
	return func(*certs.CA) *tls.Config { return selfSignedTLS(t, "mx.example.test") }
}

func TestMTASTSEnforceDeliversOverVerifiedTLS(t *testing.T) {
	s := newSTSSetup(t, certFor(t, "mx.example.test"), "1", policy("enforce", "mx.example.test"))
	txn := s.deliver(t)
	if !txn.TLS() || len(s.dest.deliveries()) != 1 {
		t.Errorf("TLS() = %v, %d deliveries; want one over TLS", txn.TLS(), len(s.dest.deliveries()))
	}
	s.results.check(t, "mta-sts enforce ok")
}

func TestMTASTSEnforceRefusesCertificateForAnotherName(t *testing.T) {
	s := newSTSSetup(t, certFor(t, "other.test"), "1", policy("enforce", "mx.example.test"))
	_, err := s.begin(t)
	sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: fmt.Sprintf("example.test: MTA-STS policy (enforce): mx.example.test[127.0.0.2]:%d: certificate not valid for mx.example.test (it is for other.test)", s.relay.cfg.Port)})
	if n := len(s.dest.deliveries()); n != 0 || s.dest.acceptedConns() != 1 {
		t.Errorf("%d deliveries on %d connections; want one connection and no plaintext retry", n, s.dest.acceptedConns())
	}
	s.results.check(t, "mta-sts enforce certificate-host-mismatch")
}

func TestMTASTSEnforceRefusesUntrustedCertificate(t *testing.T) {
	s := newSTSSetup(t, selfSigned(t), "1", policy("enforce", "mx.example.test"))
	_, err := s.begin(t)
	reply := asReply(t, err)
	if reply.Code != 451 || !strings.Contains(reply.Message, "MTA-STS policy (enforce)") || !strings.Contains(reply.Message, "not signed by a trusted authority") {
		t.Errorf("reply = %d %q; want a 451 naming the policy and the untrusted certificate", reply.Code, reply.Message)
	}
	s.results.check(t, "mta-sts enforce certificate-not-trusted")
}

// A TLS report is delivered despite the destination's TLS failures (RFC
// 8460 §3): here an enforced MTA-STS policy and an untrusted certificate,
// under tls_security verify; and its session is not told to TLSResult,
// so it stays out of the next report.
func TestTLSReportDeliveredDespiteTLSPolicy(t *testing.T) {
	var told atomic.Int32
	s := newSTSSetup(t, selfSigned(t), "1", policy("enforce", "mx.example.test"), func(c *Config) {
		c.Security = Verify
		c.TLSResult = func(TLSCheck) { told.Add(1) }
	})
	ctx := ForTLSReport(context.Background())
	txn, rcptErr, err := s.relay.Begin(ctx, "example.test", "postmaster@fwd.test", nil, "tls@example.test")
	if err != nil || rcptErr != nil {
		t.Fatalf("Begin: %v, RCPT: %v; want the report taken", err, rcptErr)
	}
	if _, err := txn.Data(ctx, []byte(testMessage)); err != nil {
		t.Fatal(err)
	}
	txn.Close()
	if n := len(s.dest.deliveries()); n != 1 || !txn.TLS() {
		t.Errorf("%d deliveries, TLS %v; want one, over (unverified) TLS", n, txn.TLS())
	}
	if n := told.Load(); n != 0 {
		t.Errorf("TLSResult told %d times of a TLS report's session, want 0", n)
	}
	// Other mail is still held to the policy.
	if _, err := s.begin(t); asReply(t, err).Code != 451 {
		t.Errorf("a message that is no TLS report: %v, want 451", err)
	}
}

func TestMTASTSEnforceRefusesExpiredCertificate(t *testing.T) {
	expired := time.Now().Add(-time.Minute).Truncate(time.Second)
	s := newSTSSetup(t, func(ca *certs.CA) *tls.Config {
		cert, err := ca.Issue(expired, "mx.example.test")
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}
	}, "1", policy("enforce", "mx.example.test"))
	_, err := s.begin(t)
	sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: fmt.Sprintf("example.test: MTA-STS policy (enforce): mx.example.test[127.0.0.2]:%d: certificate expired on %s",
			s.relay.cfg.Port, expired.UTC().Format(time.RFC3339))})
	s.results.check(t, "mta-sts enforce certificate-expired")
}

func TestMTASTSEnforceRefusesDestinationWithoutSTARTTLS(t *testing.T) {
	s := newSTSSetup(t, nil, "1", policy("enforce", "mx.example.test"))
	_, err := s.begin(t)
	sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: fmt.Sprintf("example.test: MTA-STS policy (enforce): mx.example.test[127.0.0.2]:%d: STARTTLS not offered", s.relay.cfg.Port)})
	if n := len(s.dest.deliveries()); n != 0 {
		t.Errorf("%d deliveries in plaintext", n)
	}
	s.results.check(t, "mta-sts enforce starttls-not-supported")
}

func TestMTASTSEnforceTriesOnlyListedMX(t *testing.T) {
	// mx1 is preferred but not in the policy; mx2 is.
	ca := newCA(t)
	port, lns := listenSamePort(t, "127.0.0.2", "127.0.0.3")
	unlisted, listed := newDestination(), newDestination()
	unlisted.server.TLSConfig = issuedTLS(t, ca, "mx1.example.test")
	listed.server.TLSConfig = issuedTLS(t, ca, "mx2.example.test")
	unlisted.serve(t, lns[0])
	listed.serve(t, lns[1])
	r := stsRelay(t, ca, port, "$TTL 300\n"+
		"example.test. IN MX 10 mx1.example.test.\n"+
		"example.test. IN MX 20 mx2.example.test.\n"+
		"mx1.example.test. IN A 127.0.0.2\n"+
		"mx2.example.test. IN A 127.0.0.3\n"+
		"mta-sts.example.test. IN A 127.0.0.1\n"+
		"_mta-sts.example.test. IN TXT \"v=STSv1; id=1\"\n",
		policy("enforce", "mx2.example.test", "*.backup.test"), nil)
	send(t, r, "example.test", "a@fwd.test", "owner@example.test", testMessage)
	if unlisted.acceptedConns() != 0 || len(listed.deliveries()) != 1 {
		t.Errorf("unlisted MX had %d connections, listed MX %d deliveries; want 0 and 1", unlisted.acceptedConns(), len(listed.deliveries()))
	}
}

func TestMTASTSEnforceReplyNamesSkippedMX(t *testing.T) {
	// mx1 is not in the policy; mx2 is, but refuses connections: the
	// reply says mx1 was left out, not just that mx2 failed.
	ca := newCA(t)
	port, lns := listenSamePort(t, "127.0.0.2")
	lns[0].Close() // nothing listens on 127.0.0.2: connections are refused
	r := stsRelay(t, ca, port, "$TTL 300\n"+
		"example.test. IN MX 10 mx1.example.test.\n"+
		"example.test. IN MX 20 mx2.example.test.\n"+
		"mx1.example.test. IN A 127.0.0.3\n"+
		"mx2.example.test. IN A 127.0.0.2\n"+
		"mta-sts.example.test. IN A 127.0.0.1\n"+
		"_mta-sts.example.test. IN TXT \"v=STSv1; id=1\"\n",
		policy("enforce", "mx2.example.test"), nil)
	_, _, err := r.Begin(context.Background(), "example.test", "a@fwd.test", nil, "owner@example.test")
	reply := asReply(t, err)
	want := fmt.Sprintf("example.test: no destination reachable: mx1.example.test: not tried, not in the MTA-STS policy; mx2.example.test[127.0.0.2]:%d: ", port)
	if reply.Code != 451 || reply.EnhancedCode != (smtp.EnhancedCode{4, 4, 1}) || !strings.HasPrefix(reply.Message, want) {
		t.Errorf("reply = %d %v %q; want 451 4.4.1 starting %q", reply.Code, reply.EnhancedCode, reply.Message, want)
	}
}

func TestMTASTSEnforceWithNoListedMX(t *testing.T) {
	s := newSTSSetup(t, certFor(t, "mx.example.test"), "1", policy("enforce", "mx9.example.test", "*.example.net"))
	_, err := s.begin(t)
	sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: "example.test: MTA-STS policy (enforce): no MX host is in the policy (mx.example.test; the policy has mx9.example.test, *.example.net)"})
	if n := s.dest.acceptedConns(); n != 0 {
		t.Errorf("%d connections to an MX the policy does not name", n)
	}
	s.results.check(t, "mta-sts enforce mx-not-in-policy")
}

func TestMTASTSTestingDeliversAndCountsFailure(t *testing.T) {
	s := newSTSSetup(t, certFor(t, "other.test"), "1", policy("testing", "mx.example.test"))
	txn := s.deliver(t)
	if !txn.TLS() || len(s.dest.deliveries()) != 1 {
		t.Errorf("TLS() = %v, %d deliveries; want one, over TLS as under may", txn.TLS(), len(s.dest.deliveries()))
	}
	s.results.check(t, "mta-sts testing certificate-host-mismatch")
}

// Under a testing-mode policy, tls_security still refuses what falls short
// of it; the refusal is counted as tls_security's, not as a testing-mode
// failure whose mail went anyway.
func TestMTASTSTestingUnderTLSSecurityVerifyCountsTheRefusal(t *testing.T) {
	s := newSTSSetup(t, certFor(t, "other.test"), "1", policy("testing", "mx.example.test"),
		func(c *Config) { c.Security = Verify })
	_, err := s.begin(t)
	sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: fmt.Sprintf("example.test: tls_security verify: mx.example.test[127.0.0.2]:%d: certificate not valid for mx.example.test (it is for other.test)", s.relay.cfg.Port)})
	if n := len(s.dest.deliveries()); n != 0 {
		t.Errorf("%d deliveries, want none", n)
	}
	s.results.check(t, "tls_security verify certificate-host-mismatch")
}

func TestMTASTSTestingCountsUnlistedMX(t *testing.T) {
	s := newSTSSetup(t, certFor(t, "mx.example.test"), "1", policy("testing", "mx9.example.test"))
	s.deliver(t)
	s.results.check(t, "mta-sts testing mx-not-in-policy")
}

func TestMTASTSWithoutRecordIsMay(t *testing.T) {
	s := newSTSSetup(t, selfSigned(t), "", policy("enforce", "mx.example.test"))
	txn := s.deliver(t)
	if !txn.TLS() || s.host.fetches.Load() != 0 {
		t.Errorf("TLS() = %v after %d policy fetches; want unverified TLS and no fetch", txn.TLS(), s.host.fetches.Load())
	}
	s.results.check(t)
}

func TestMTASTSFetchFailureWithoutCacheIsMay(t *testing.T) {
	for name, serve := range map[string]func(*policyHost){
		"404":      func(h *policyHost) { h.serve(http.StatusNotFound, "no") },
		"redirect": func(h *policyHost) { h.serve(http.StatusFound, "") },
		"bad":      func(h *policyHost) { h.serve(http.StatusOK, "version: STSv1\r\nmode: strict\r\n") },
	} {
		t.Run(name, func(t *testing.T) {
			s := newSTSSetup(t, selfSigned(t), "1", "")
			serve(s.host)
			txn := s.deliver(t)
			if !txn.TLS() || s.fetched.Load() != 1 {
				t.Errorf("TLS() = %v after %d fetches; want delivery as under may after one failed fetch", txn.TLS(), s.fetched.Load())
			}
			s.results.check(t)
		})
	}
}

func TestMTASTSCachedPolicyOutlivesFailedRefetch(t *testing.T) {
	s := newSTSSetup(t, selfSigned(t), "1", policy("enforce", "mx.example.test"))
	if _, err := s.begin(t); err == nil {
		t.Fatal("delivered to an untrusted certificate under enforce")
	}
	// A new id, and the policy host down: the cached policy stays.
	s.host.serve(http.StatusInternalServerError, "")
	if err := s.dns.SetRecords(stsZone("2")); err != nil {
		t.Fatal(err)
	}
	s.begin(t)
	s.waitFetches(t, 2)
	if _, err := s.begin(t); err == nil || asReply(t, err).Code != 451 {
		t.Errorf("after a failed refetch: %v; want the cached enforce policy's 451", err)
	}
	if n := len(s.dest.deliveries()); n != 0 {
		t.Errorf("%d deliveries", n)
	}
}

func TestMTASTSRefetchesWhenIDChanges(t *testing.T) {
	s := newSTSSetup(t, selfSigned(t), "1", policy("testing", "mx.example.test"))
	s.deliver(t)
	s.deliver(t) // the same id: no new fetch
	if n := s.host.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for an unchanged id, want 1", n)
	}
	s.host.serve(http.StatusOK, policy("enforce", "mx.example.test"))
	if err := s.dns.SetRecords(stsZone("2")); err != nil {
		t.Fatal(err)
	}
	s.deliver(t) // the cached testing policy, while the new one is fetched
	s.waitFetches(t, 2)
	if _, err := s.begin(t); err == nil || asReply(t, err).Code != 451 {
		t.Errorf("after the id changed to an enforce policy: %v; want 451", err)
	}
}

func TestPoolKeepsUnverifiedConnectionFromEnforcedDomain(t *testing.T) {
	// Both domains have the same MX, which has a certificate no CA
	// vouches for: other.test has no policy, example.test enforces one.
	s := newSTSSetup(t, selfSigned(t), "1", policy("enforce", "mx.example.test"))
	if err := s.dns.SetRecords(stsZone("1") + "other.test. IN MX 10 mx.example.test.\n"); err != nil {
		t.Fatal(err)
	}
	send(t, s.relay, "other.test", "a@fwd.test", "owner@other.test", testMessage)
	if s.relay.pool.idleCount() != 1 {
		t.Fatalf("%d idle connections, want the unverified one", s.relay.pool.idleCount())
	}
	if _, err := s.begin(t); err == nil {
		t.Fatal("example.test's mail went over the unverified connection")
	}
	if n := len(s.dest.deliveries()); n != 1 || s.dest.acceptedConns() != 2 {
		t.Errorf("%d deliveries on %d connections; want other.test's only, and a fresh connection tried for example.test", n, s.dest.acceptedConns())
	}
	// The unverified connection is still there for other.test.
	send(t, s.relay, "other.test", "a@fwd.test", "owner@other.test", testMessage)
	if s.dest.acceptedConns() != 2 {
		t.Errorf("%d connections; want other.test's second message on the idle one", s.dest.acceptedConns())
	}
}

func TestPoolReusesVerifiedConnectionForEnforcedDomain(t *testing.T) {
	s := newSTSSetup(t, certFor(t, "mx.example.test"), "", "")
	if err := s.dns.SetRecords(stsZone("") + "other.test. IN MX 10 mx.example.test.\n"); err != nil {
		t.Fatal(err)
	}
	send(t, s.relay, "other.test", "a@fwd.test", "owner@other.test", testMessage)
	s.host.serve(http.StatusOK, policy("enforce", "mx.example.test"))
	if err := s.dns.SetRecords(stsZone("1") + "other.test. IN MX 10 mx.example.test.\n"); err != nil {
		t.Fatal(err)
	}
	s.deliver(t)
	if s.dest.acceptedConns() != 1 {
		t.Errorf("%d connections; want the verified one reused under enforce", s.dest.acceptedConns())
	}
	s.results.check(t, "mta-sts enforce ok")
}

func TestTLSSecurityVerify(t *testing.T) {
	for name, tc := range map[string]struct {
		cert   func(*certs.CA) *tls.Config
		result string
		reply  string // "" = delivered
	}{
		"valid":       {certFor(t, "mx.example.test"), "ok", ""},
		"other name":  {certFor(t, "other.test"), "certificate-host-mismatch", "certificate not valid for mx.example.test (it is for other.test)"},
		"self-signed": {selfSigned(t), "certificate-not-trusted", "certificate not signed by a trusted authority"},
		"no STARTTLS": {nil, "starttls-not-supported", "STARTTLS not offered"},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSTSSetup(t, tc.cert, "", "", func(c *Config) { c.Security = Verify })
			if tc.reply == "" {
				s.deliver(t)
			} else {
				_, err := s.begin(t)
				sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
					Message: fmt.Sprintf("example.test: tls_security verify: mx.example.test[127.0.0.2]:%d: %s", s.relay.cfg.Port, tc.reply)})
				if n := len(s.dest.deliveries()); n != 0 {
					t.Errorf("%d deliveries", n)
				}
			}
			s.results.check(t, "tls_security verify "+tc.result)
		})
	}
}

func TestTLSSecurityEncrypt(t *testing.T) {
	s := newSTSSetup(t, selfSigned(t), "", "", func(c *Config) { c.Security = Encrypt })
	if txn := s.deliver(t); !txn.TLS() {
		t.Error("delivered without TLS")
	}
	s.results.check(t, "tls_security encrypt ok")

	s = newSTSSetup(t, nil, "", "", func(c *Config) { c.Security = Encrypt })
	_, err := s.begin(t)
	sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: fmt.Sprintf("example.test: tls_security encrypt: mx.example.test[127.0.0.2]:%d: STARTTLS not offered", s.relay.cfg.Port)})
	s.results.check(t, "tls_security encrypt starttls-not-supported")
}

func TestTLSSecurityEncryptDoesNotFallBackToPlaintext(t *testing.T) {
	s := newSTSSetup(t, func(*certs.CA) *tls.Config { return &tls.Config{} }, "", "", func(c *Config) { c.Security = Encrypt })
	_, err := s.begin(t)
	if reply := asReply(t, err); reply.Code != 451 || reply.EnhancedCode != (smtp.EnhancedCode{4, 7, 5}) {
		t.Errorf("reply = %d %v %q; want 451 4.7.5", reply.Code, reply.EnhancedCode, reply.Message)
	}
	if s.dest.acceptedConns() != 1 || len(s.dest.deliveries()) != 0 {
		t.Errorf("%d connections, %d deliveries; want no plaintext retry", s.dest.acceptedConns(), len(s.dest.deliveries()))
	}
	s.results.check(t, "tls_security encrypt validation-failure")
}

func TestTLSSecurityEncryptRefusedSTARTTLS(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := &rawMX{ehlo: "250-mx.dest.test\r\n250 STARTTLS\r\n", replies: map[string]string{"STARTTLS": "454 4.7.0 TLS not available\r\n"}}
	d.serve(t, lns[0])
	results := &tlsResults{}
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"), func(c *Config) { c.Security, c.TLSResult = Encrypt, results.record })
	_, _, err := r.Begin(context.Background(), "example.test", "a@fwd.test", nil, "owner@example.test")
	sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: fmt.Sprintf("example.test: tls_security encrypt: mx.example.test[127.0.0.2]:%d: STARTTLS refused: 454 4.7.0 TLS not available", port)})
	if slices.ContainsFunc(d.commands(), func(l string) bool { return strings.HasPrefix(l, "MAIL") }) {
		t.Errorf("MAIL FROM sent in plaintext: %q", d.commands())
	}
	results.check(t, "tls_security encrypt starttls-not-supported")
}

// TestTLSCheckDetails: what TLSResult is told names the destination
// domain, the MX host and its address, and the domain's MTA-STS policy,
// for TLS reports; a session under no policy is told too, as Policy "".
func TestTLSCheckDetails(t *testing.T) {
	var mu sync.Mutex
	var got []TLSCheck
	keep := func(c *Config) {
		c.TLSResult = func(check TLSCheck) {
			mu.Lock()
			got = append(got, check)
			mu.Unlock()
		}
	}
	s := newSTSSetup(t, selfSigned(t), "1", policy("enforce", "mx.example.test"), keep)
	if _, err := s.begin(t); err == nil {
		t.Fatal("delivered to an untrusted certificate under an enforced policy")
	}
	mu.Lock()
	if len(got) != 1 {
		t.Fatalf("told %d results, want 1: %+v", len(got), got)
	}
	c := got[0]
	mu.Unlock()
	if c.Policy != "mta-sts" || c.Result != "certificate-not-trusted" || c.Domain != "example.test" ||
		c.Host != "mx.example.test" || c.IP.String() != "127.0.0.2" || c.STS == nil || c.STS.Mode != "enforce" ||
		!slices.Equal(c.STS.MX, []string{"mx.example.test"}) {
		t.Errorf("told %+v", c)
	}

	got = nil
	s = newSTSSetup(t, selfSigned(t), "", "", keep) // no MTA-STS: no policy
	s.deliver(t)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Policy != "" || got[0].Result != "ok" || got[0].Domain != "example.test" ||
		got[0].Host != "mx.example.test" || got[0].STS != nil {
		t.Errorf("under no policy, told %+v; want one ok for example.test", got)
	}
}
