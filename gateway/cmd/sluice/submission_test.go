package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/freeport"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// The submission service as a mail client sees it, with Python's smtplib
// (testdata/submission.py) against the real binary: AUTH success over
// STARTTLS and implicit TLS, a wrong password (535), AUTH and MAIL in
// clear text (538, 530), MAIL without a login (530), a forbidden sender
// in the envelope and in From (553 5.7.1), the destination's refusal of
// a recipient passed back in session, and throttling after
// max_failures_per_ip failures (454). Then what the destination received:
// no SRS, and the From domain's own signature, which dkimpy (an
// implementation of DKIM independent of ours) verifies, on top; our DMARC
// evaluator, given dkimpy's results, finds DMARC passing by DKIM alone,
// aligned under the From domain's adkim=s and p=reject.
func TestSubmissionWithPython(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary and python3")
	}
	dir := t.TempDir()
	bin := buildSluice(t, dir)

	// The keys: the gateway's (example.test) and the custom domain's own.
	records := map[string]string{}
	for _, k := range []struct{ sel, domain string }{{"gw", "example.test"}, {"own", "my-company.test"}} {
		out, code := runSluice(t, bin, "keygen", "-selector", k.sel, "-domain", k.domain, "-out", filepath.Join(dir, "keys", k.sel+".pem"))
		if code != 0 {
			t.Fatalf("keygen: exit %d", code)
		}
		rec := out[strings.Index(out, `"`):]
		records[k.sel+"._domainkey."+k.domain] = strings.NewReplacer(`" "`, "", `"`, "", "\n", "").Replace(rec)
	}
	dest := startRefusingDestination(t, "nobody@example.net")
	_, destPort, _ := net.SplitHostPort(dest.addr)
	zone := "example.net. 3600 IN MX 10 mx.example.net.\nmx.example.net. 3600 IN A 127.0.0.1\n" +
		"_dmarc.my-company.test. 3600 IN TXT \"v=DMARC1; p=reject; adkim=s\"\n"
	for name, txt := range records {
		zone += fmt.Sprintf("%s. 3600 IN TXT %q\n", name, txt)
	}
	dns := dnstest.Start(t, zone)

	// The password's hash, as the operator makes it.
	hash := passwdHash(t, bin, "correct horse")
	starttls, implicit := freeport.Addr(t), freeport.Addr(t)
	cfg := fmt.Sprintf(`hostname = "mx.example.test"
domains = ["example.test", "my-company.test"]
data_dir = "data"
[smtp]
listen = [%q]
tls_self_signed = true
[relay]
port = %s
[srs]
secrets = ["test-secret-test-secret-test"]
[dkim]
domain = "example.test"
[[dkim.key]]
selector = "gw"
file = "keys/gw.pem"
[[dkim.key]]
domain = "my-company.test"
selector = "own"
file = "keys/own.pem"
[dns]
nameservers = [%q]
[admin]
listen = ""
[submission]
listen = [%q]
listen_tls = [%q]
max_failures_per_ip = 3
[[submission.user]]
name = "me"
password_hash = %q
senders = ["info@my-company.test"]
`, freeport.Addr(t), destPort, dns.Addr(), starttls, implicit, hash)
	cfgPath := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := startServe(t, bin, cfgPath)
	serve.waitLog("submission listening", implicit)

	setup := map[string]any{
		"starttls": starttls, "implicit": implicit, "user": "me", "password": "correct horse",
		"sender": "info@my-company.test", "forbidden": "ceo@example.org",
		"to": "friend@example.net", "refused": "nobody@example.net", "refusal": "5.1.1 " + destRefusal.Message,
		"max_failures": 3, "throttled_source": "127.0.0.3",
	}
	cmd := exec.Command("/usr/bin/python3", filepath.Join("testdata", "submission.py"), dkimpy.WriteJSON(t, "setup.json", setup))
	out, err := cmd.CombinedOutput()
	t.Logf("submission.py:\n%s", out)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "FAIL ") {
			t.Errorf("smtplib: %s", strings.TrimPrefix(line, "FAIL "))
		}
	}
	if err != nil && !strings.Contains(string(out), "FAIL ") {
		t.Fatalf("submission.py: %v", err)
	}
	if passes := strings.Count(string(out), "PASS "); passes < 15 {
		t.Errorf("submission.py passed %d checks, want 15", passes)
	}

	// Two messages were sent as info@ to friend@ alone (587 and 465), and
	// a third to friend@ and nobody@, which the destination refused.
	msgs := dest.messages()
	if len(msgs) != 3 {
		t.Fatalf("the destination got %d messages, want 3", len(msgs))
	}
	res, err := resolver.New(resolver.Config{Nameservers: []string{dns.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if m.from != "info@my-company.test" {
			t.Errorf("message %d: MAIL FROM:<%s>, want the user's own address (no SRS)", i+1, m.from)
		}
		checkSubmittedSignature(t, res, m.data, records)
	}
	serve.stop()
}

// checkSubmittedSignature has dkimpy verify msg's signatures, checks that
// the top one is the From domain's and the gateway's follows, and runs
// our DMARC evaluation on dkimpy's results: DMARC passes, aligned by DKIM
// (no SPF result is given, so DKIM alone decides).
func checkSubmittedSignature(t *testing.T, res *resolver.Resolver, msg []byte, records map[string]string) {
	t.Helper()
	header, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	unfolded := strings.NewReplacer("\r\n ", " ", "\r\n\t", " ").Replace(string(header))
	var domains []string
	for _, m := range dkimDomain.FindAllStringSubmatch(unfolded, -1) {
		domains = append(domains, m[1])
	}
	got := dkimpy.Check(t, msg, records)
	if len(got.DKIM) != 2 || len(domains) != 2 || domains[0] != "my-company.test" || domains[1] != "example.test" {
		t.Fatalf("signatures d=%v, dkimpy %v; want my-company.test's then example.test's:\n%s", domains, got.DKIM, header)
	}
	from, err := dmarc.FromDomain(message.ParseHeader(append(bytes.Clone(header), "\r\n"...)))
	if err != nil || from != "my-company.test" {
		t.Fatalf("From domain %q, %v", from, err)
	}
	ids := dmarc.Identifiers{SPFResult: dmarc.None}
	for i, ok := range got.DKIM {
		if !ok {
			t.Errorf("dkimpy does not verify the signature of %s", domains[i])
		}
		r := dmarc.Fail
		if ok {
			r = dmarc.Pass
		}
		ids.DKIM = append(ids.DKIM, dmarc.DKIMResult{Result: r, Domain: domains[i]})
	}
	if e := dmarc.Evaluate(context.Background(), res, dmarc.TreeWalk, from, ids); e.Result != dmarc.Pass || !e.DKIMAligned || e.Policy != "reject" {
		t.Errorf("DMARC of the submitted message: %s (%s), DKIM aligned %v, policy %q; want pass, aligned, under p=reject", e.Result, e.Reason, e.DKIMAligned, e.Policy)
	}
	if !strings.Contains(unfolded, "\r\nAuthentication-Results: mx.example.test; auth=pass smtp.auth=me\r\n") || !strings.Contains(unfolded, " with ESMTPSA id ") {
		t.Errorf("the submitted message lacks the login's Authentication-Results or the ESMTPSA Received:\n%s", header)
	}
}

var dkimDomain = regexp.MustCompile(`(?m)^DKIM-Signature:[^\r\n]*?[\s;]d=([^;\s]+)`)

// passwdHash runs `sluice passwd` for password and returns the hash.
func passwdHash(t *testing.T, bin, password string) string {
	t.Helper()
	cmd := exec.Command(bin, "passwd")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sluice passwd: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// destRefusal is what the destination says to a recipient it refuses.
var destRefusal = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "The email account that you tried to reach does not exist"}

// refusingDestination is a go-smtp server standing in for a recipient's
// MX: it refuses one recipient (destRefusal) and keeps every message.
type refusingDestination struct {
	addr, refuse string
	mu           sync.Mutex
	got          []received
}

type received struct {
	from string
	to   []string
	data []byte
}

func startRefusingDestination(t *testing.T, refuse string) *refusingDestination {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &refusingDestination{addr: l.Addr().String(), refuse: refuse}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &destSession{d: d}, nil }))
	s.Domain = "mx.example.net"
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return d
}

func (d *refusingDestination) messages() []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]received(nil), d.got...)
}

type destSession struct {
	d   *refusingDestination
	msg received
}

func (s *destSession) Reset()        { s.msg = received{} }
func (s *destSession) Logout() error { return nil }
func (s *destSession) Mail(from string, _ *smtp.MailOptions) error {
	s.msg.from = from
	return nil
}
func (s *destSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.EqualFold(to, s.d.refuse) {
		return destRefusal
	}
	s.msg.to = append(s.msg.to, to)
	return nil
}
func (s *destSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(s.msg.to) == 0 {
		return errors.New("no recipients")
	}
	s.msg.data = data
	s.d.mu.Lock()
	s.d.got = append(s.d.got, s.msg)
	s.d.mu.Unlock()
	return nil
}
