package gateway_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// send makes one transaction and returns the reply to DATA (or the first
// refusal).
func (e *env) send(t *testing.T, from, to, msg string) error {
	t.Helper()
	return sendMail(t, e.client(t), from, to, msg)
}

func (e *env) resolver(t *testing.T) *resolver.Resolver {
	r, err := resolver.New(resolver.Config{Nameservers: []string{e.dns.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkForwarded verifies, as a destination would, that a forwarded
// message carries valid DKIM signatures of ours and a valid ARC chain of
// the given length, with our own verifiers and with dkimpy.
func (e *env) checkForwarded(t *testing.T, msg []byte, instances int) {
	t.Helper()
	res := e.resolver(t)
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(context.Background(), name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ours := 0
	for _, v := range vs {
		if v.Domain == "ours.test" {
			ours++
			if v.Err != nil {
				t.Errorf("our DKIM signature does not verify: %v", v.Err)
			}
		}
	}
	if ours != 2 {
		t.Errorf("%d DKIM signatures of ours, want 2", ours)
	}
	chain := arc.Verify(context.Background(), msg, arc.VerifyOptions{Lookup: res.LookupTXT})
	if chain.CV != "pass" || chain.Instances != instances || chain.Sealers[instances-1].Domain != "ours.test" {
		t.Errorf("ARC chain: %+v, want pass with %d instances, the last ours", chain, instances)
	}

	// dkimpy, given the same keys, agrees.
	records := map[string]string{"arc._domainkey.lists.example.net.": mustTXT(t, res, "arc._domainkey.lists.example.net")}
	for sel := range e.keys {
		records[sel+"._domainkey.ours.test."] = e.keys[sel]
	}
	got := dkimpy.Check(t, msg, records)
	if got.ARC != "pass" {
		t.Errorf("dkimpy: ARC chain %s (%s), want pass", got.ARC, got.Reason)
	}
	// dkimpy verifies ed25519 and rsa; our two signatures are on top.
	if len(got.DKIM) < 2 || !got.DKIM[0] || !got.DKIM[1] {
		t.Errorf("dkimpy: DKIM results %v, want our two signatures valid", got.DKIM)
	}
}

func mustTXT(t *testing.T, r *resolver.Resolver, name string) string {
	txts, err := r.LookupTXT(context.Background(), name)
	if err != nil || len(txts) != 1 {
		t.Fatalf("TXT %s: %v %v", name, txts, err)
	}
	return txts[0]
}

func fieldValue(msg []byte, name string) string {
	unfolded := strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(string(msg))
	for _, line := range strings.Split(unfolded, "\r\n") {
		if strings.HasPrefix(strings.ToLower(line), strings.ToLower(name)+":") {
			return strings.TrimSpace(line[len(name)+1:])
		}
	}
	return ""
}

// A message from a domain whose policy is reject, aligned with nothing,
// is refused in session, with the reason.
func TestDMARCRejectInSession(t *testing.T) {
	e := startEnv(t, envOptions{})
	msg := "From: Bob <bob@strict.example>\r\nSubject: spoofed\r\n\r\nhello\r\n"
	err := e.send(t, "bob@strict.example", "info@ours.test", msg)
	wantReply(t, "DMARC reject", err, 550, smtp.EnhancedCode{5, 7, 1},
		"strict.example's DMARC policy is reject and neither SPF nor DKIM aligned")
	if n := len(e.dest.deliveries()); n != 0 {
		t.Errorf("%d messages delivered, want 0", n)
	}
}

// The same message, sealed on the way by a mailing list we trust, is
// forwarded: the trusted chain overrides the DMARC failure, and the
// destination gets a valid chain extended by our instance 2.
func TestTrustedARCSealerOverridesDMARC(t *testing.T) {
	e := startEnv(t, envOptions{})
	orig := "From: Bob <bob@strict.example>\r\nTo: list@lists.example.net\r\nSubject: [list] hello\r\n" +
		"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <2@strict.example>\r\n\r\nThe list changed this body.\r\n"
	set, err := arc.Seal([]byte(orig), "lists.example.net", "spf=pass smtp.mailfrom=strict.example; dmarc=pass header.from=strict.example",
		arc.Result{CV: "none"}, arc.SealConfig{Domain: "lists.example.net", Selector: "arc", Key: e.listKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.send(t, "list-bounces@lists.example.net", "info@ours.test", string(set)+orig); err != nil {
		t.Fatalf("a message sealed by a trusted list: %v, want it forwarded", err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d deliveries", len(got))
	}
	msg := got[0].data
	ar := fieldValue(msg, "Authentication-Results")
	// The override is recorded in our results and in our ARC set's.
	override := "dmarc=fail (p=reject not applied: trusted ARC sealer lists.example.net) header.from=strict.example"
	for _, want := range []string{"mx.ours.test;", "spf=pass", "arc=pass", override} {
		if !strings.Contains(ar, want) {
			t.Errorf("Authentication-Results %q lacks %q", ar, want)
		}
	}
	aar := fieldValue(msg, "ARC-Authentication-Results")
	if !strings.HasPrefix(aar, "i=2; mx.ours.test;") || !strings.Contains(aar, "arc=pass") || !strings.Contains(aar, override) {
		t.Errorf("our ARC-Authentication-Results: %q", aar)
	}
	e.checkForwarded(t, msg, 2)

	// The same message sealed by a list we do not trust is refused.
	set, err = arc.Seal([]byte(orig), "other-list.example", "dmarc=pass header.from=strict.example",
		arc.Result{CV: "none"}, arc.SealConfig{Domain: "other-list.example", Selector: "arc", Key: e.listKey})
	if err != nil {
		t.Fatal(err)
	}
	err = e.send(t, "list-bounces@lists.example.net", "info@ours.test", string(set)+orig)
	wantReply(t, "sealed by an untrusted list", err, 550, smtp.EnhancedCode{5, 7, 1}, "strict.example's DMARC policy is reject")
}

// Plain forwarded mail gets ARC instance 1 and valid signatures, and an
// incoming Authentication-Results claiming our name is dropped.
func TestForwardedMailIsSealedAndForgedResultsDropped(t *testing.T) {
	e := startEnv(t, envOptions{})
	forged := "Authentication-Results: mx.ours.test; dmarc=pass header.from=example.org\r\n" +
		"X-Sluice-DMARC-Override: arc; sealer=evil.test\r\n"
	if err := e.send(t, "alice@example.org", "info@ours.test", forged+testMessage); err != nil {
		t.Fatal(err)
	}
	msg := e.dest.deliveries()[0].data
	if n := bytes.Count(msg, []byte("Authentication-Results: mx.ours.test")); n != 1 {
		t.Errorf("%d Authentication-Results of ours, want only the real one:\n%s", n, msg)
	}
	if bytes.Contains(msg, []byte("dmarc=pass")) || bytes.Contains(msg, []byte("evil.test")) {
		t.Errorf("a forged result survived:\n%s", msg)
	}
	if ar := fieldValue(msg, "Authentication-Results"); !strings.Contains(ar, "spf=none") || !strings.Contains(ar, "dmarc=none") {
		t.Errorf("Authentication-Results %q: want spf=none and dmarc=none for example.org", ar)
	}
	e.checkForwarded(t, msg, 1)
}

// A quarantine policy marks the message and forwards it.
func TestDMARCQuarantineMarks(t *testing.T) {
	e := startEnv(t, envOptions{})
	if err := e.send(t, "carol@quarantine.example", "info@ours.test", "From: carol@quarantine.example\r\nSubject: q\r\n\r\nbody\r\n"); err != nil {
		t.Fatalf("quarantined message: %v, want it forwarded", err)
	}
	msg := e.dest.deliveries()[0].data
	if q := fieldValue(msg, "X-Sluice-Quarantine"); !strings.Contains(q, "quarantine.example") {
		t.Errorf("X-Sluice-Quarantine = %q", q)
	}
}

// A DMARC lookup that never answers gives temperror within the
// configured bounds, and the plugin asks the sender to retry: no hang.
func TestDNSTimeoutIsTemporary(t *testing.T) {
	e := startEnv(t, envOptions{})
	done := make(chan error, 1)
	go func() {
		done <- e.send(t, "dave@slow.example", "info@ours.test", "From: dave@slow.example\r\nSubject: s\r\n\r\nbody\r\n")
	}()
	select {
	case err := <-done:
		wantReply(t, "DMARC lookup timed out", err, 451, smtp.EnhancedCode{4, 7, 1}, "slow.example")
	case <-time.After(60 * time.Second):
		t.Fatal("the session hung on a DNS timeout")
	}
}

// A message that arrives with an ARC set of instance 50 or more (forged:
// no real chain is behind it) is forwarded without a set of ours, since
// none may follow, and with arc=fail recorded: a 4xx could never clear,
// and the sender would retry for days.
func TestARCInstanceFiftyForwardedUnsealed(t *testing.T) {
	e := startEnv(t, envOptions{})
	for _, i := range []string{"50", "51"} {
		forged := "ARC-Seal: i=" + i + "; a=rsa-sha256; cv=pass; d=evil.test; s=x; b=AAAA\r\n" +
			"ARC-Message-Signature: i=" + i + "; a=rsa-sha256; d=evil.test; s=x; h=from; bh=AAAA; b=AAAA\r\n" +
			"ARC-Authentication-Results: i=" + i + "; evil.test; spf=pass\r\n" + testMessage
		if err := e.send(t, "alice@example.org", "info@ours.test", forged); err != nil {
			t.Fatalf("i=%s: %v, want the message forwarded", i, err)
		}
	}
	got := e.dest.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	for _, d := range got {
		if ar := fieldValue(d.data, "Authentication-Results"); !strings.Contains(ar, "arc=fail") {
			t.Errorf("Authentication-Results %q, want arc=fail", ar)
		}
		if as := fieldValue(d.data, "ARC-Seal"); strings.Contains(as, "d=ours.test") || !strings.Contains(as, "d=evil.test") {
			t.Errorf("first ARC-Seal %q, want the forged one and none of ours", as)
		}
		if fieldValue(d.data, "DKIM-Signature") == "" {
			t.Error("not DKIM-signed")
		}
	}
}
