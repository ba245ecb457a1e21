package gateway_test

import (
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// startFromRewrite starts a gateway whose chain is the fromrewrite plugin,
// the router (with a catch-all that rejects) and the dmarc plugin, with senders whose mail passes
// DMARC here by SPF alone (spf-only.example, p=reject), by an aligned
// DKIM signature (signed.example, p=reject), and with policy none
// (relaxed.example). Each has its MX at the destination, where replies go.
// settings are lines added to the plugin's config; before are plugins
// ahead of it in the chain.
func startFromRewrite(t *testing.T, settings, before string) *env {
	t.Helper()
	e := startEnv(t, envOptions{plugins: before + fmt.Sprintf(`
[[plugin]]
name = "fromrewrite"
path = %q
capabilities = ["headers"]
[plugin.config]
domain = "ours.test"
secret = "fromrewrite-test-secret-0123"
%s

%s
# Replies are routed before this catch-all sees them.
[[plugin.config.rule]]
match = "*@ours.test"
action = "reject"
text = "No such address"

[[plugin]]
name = "dmarc"
path = %q
`, wasmbuild.ForTest(t, "./plugins/fromrewrite"), settings, routerPlugin(t), wasmbuild.ForTest(t, "./plugins/dmarc"))})
	txt, _ := dkim.TXTRecord(testKeys(t).list)
	e.addRecords(t, `
spf-only.example.          300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.spf-only.example.   300 IN TXT "v=DMARC1; p=reject"
spf-only.example.          300 IN MX 10 mx.dest.test.
signed.example.            300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.signed.example.     300 IN TXT "v=DMARC1; p=reject"
relaxed.example.           300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.relaxed.example.    300 IN TXT "v=DMARC1; p=none"
`+fmt.Sprintf("s1._domainkey.signed.example. 300 IN TXT %s\n", splitTXT(txt)))
	return e
}

// fields returns the values of every field named name in msg's header.
func fields(msg []byte, name string) []string {
	header, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	unfolded := strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(header)
	var values []string
	for _, line := range strings.Split(unfolded, "\r\n") {
		if n, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(n, name) {
			values = append(values, strings.TrimSpace(v))
		}
	}
	return values
}

// The destination gets mail from a p=reject author that only SPF
// authenticated with a From of ours that our DKIM signature covers, the
// author in Reply-To and the rewrite in our results; replies to the new
// From reach the author, and an address in that form we did not mint is
// refused.
func TestFromRewrittenAndRepliesRouted(t *testing.T) {
	e := startFromRewrite(t, "", "")
	msg := "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@spf-only.example>\r\n" +
		"To: info@ours.test\r\nSubject: rewritten\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <1@spf-only.example>\r\n\r\nHello.\r\n"
	if err := e.send(t, "joerg@spf-only.example", "info@ours.test", msg); err != nil {
		t.Fatal(err)
	}
	got := e.dest.deliveries()[0].data
	from := fields(got, "From")
	if len(from) != 1 {
		t.Fatalf("From fields %q, want one", from)
	}
	a, err := (&mail.AddressParser{WordDecoder: &mime.WordDecoder{}}).Parse(from[0])
	if err != nil {
		t.Fatalf("From %q: %v", from[0], err)
	}
	if a.Name != "Jörg Müller via ours.test" || !strings.HasPrefix(a.Address, "joerg_at_spf-only.example_") || !strings.HasSuffix(a.Address, "@ours.test") {
		t.Errorf("From %q: name %q, address %q", from[0], a.Name, a.Address)
	}
	if rt := fields(got, "Reply-To"); len(rt) != 1 || rt[0] != "=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@spf-only.example>" {
		t.Errorf("Reply-To %q, want the original From", rt)
	}
	ar := fieldValue(got, "Authentication-Results")
	if !strings.Contains(ar, "dmarc=pass (p=reject, SPF spf-only.example aligns with spf-only.example; From rewritten to "+a.Address) ||
		!strings.Contains(ar, "header.from=spf-only.example") || strings.Count(ar, "dmarc=") != 1 {
		t.Errorf("Authentication-Results %q", ar)
	}
	// Our signatures verify, and they sign the new From: the destination's
	// DMARC check of ours.test passes by them.
	e.checkForwarded(t, got, 1)
	for _, sig := range fields(got, "DKIM-Signature") {
		if strings.Contains(sig, "d=ours.test") && !strings.Contains(strings.ReplaceAll(sig, " ", ""), "h=from:from") {
			t.Errorf("our signature %q does not sign From", sig)
		}
	}

	// A reply to the new From goes to the author, through the router's
	// domain and the author's MX.
	c := e.client(t)
	if err := c.Mail("me@dest.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(a.Address, nil); err != nil {
		t.Fatalf("RCPT %s: %v", a.Address, err)
	}
	if _, err := sendData(t, c, "From: me@dest.test\r\nTo: "+a.Address+"\r\nSubject: Re: rewritten\r\n\r\nThanks.\r\n"); err != nil {
		t.Fatal(err)
	}
	if d := e.dest.deliveries(); len(d) != 2 || len(d[1].to) != 1 || d[1].to[0] != "joerg@spf-only.example" {
		t.Errorf("the reply went to %v, want joerg@spf-only.example", d[len(d)-1].to)
	}

	// Nobody can make us relay by writing such an address.
	forged := "victim_at_spf-only.example_aaaaaaaa@ours.test"
	err = e.send(t, "spammer@relaxed.example", forged, "Subject: relay?\r\n\r\nspam\r\n")
	wantReply(t, "a reply address we did not mint", err, 550, smtp.EnhancedCode{5, 1, 1}, "no such reply address here")
	if n := len(e.dest.deliveries()); n != 2 {
		t.Errorf("%d deliveries, want the forged address's mail not among them", n)
	}
}

// What the destination's DMARC check passes as it is stays as it is: mail
// with an aligned DKIM signature, and mail whose author asks for nothing
// (p=none). A Reply-To of the author's is kept.
func TestFromLeftAlone(t *testing.T) {
	e := startFromRewrite(t, "", "")
	for _, m := range []struct{ from, msg, wantFrom string }{
		{"sam@signed.example", signedBySam(t), "Sam <sam@signed.example>"},
		{"rita@relaxed.example", "From: Rita <rita@relaxed.example>\r\nSubject: none\r\n\r\nHello.\r\n", "Rita <rita@relaxed.example>"},
	} {
		if err := e.send(t, m.from, "info@ours.test", m.msg); err != nil {
			t.Fatalf("%s: %v", m.from, err)
		}
		d := e.dest.deliveries()
		got := d[len(d)-1].data
		if from := fields(got, "From"); len(from) != 1 || from[0] != m.wantFrom {
			t.Errorf("%s: From %q, want %q untouched", m.from, from, m.wantFrom)
		}
		if rt := fields(got, "Reply-To"); len(rt) != 0 {
			t.Errorf("%s: Reply-To %q added", m.from, rt)
		}
	}

	// A message with its own Reply-To keeps it, and only it.
	msg := "From: Joe <joe@spf-only.example>\r\nReply-To: Team <team@spf-only.example>\r\nSubject: r\r\n\r\nHello.\r\n"
	if err := e.send(t, "joe@spf-only.example", "info@ours.test", msg); err != nil {
		t.Fatal(err)
	}
	d := e.dest.deliveries()
	got := d[len(d)-1].data
	if from := fields(got, "From"); len(from) != 1 || !strings.Contains(from[0], "joe_at_spf-only.example_") {
		t.Errorf("From %q, want rewritten", from)
	}
	if rt := fields(got, "Reply-To"); len(rt) != 1 || rt[0] != "Team <team@spf-only.example>" {
		t.Errorf("Reply-To %q, want the message's own", rt)
	}
}

// signedBySam is a message of signed.example, which its DKIM signature
// aligns with.
func signedBySam(t *testing.T) string {
	t.Helper()
	signer, err := dkim.NewSigner(dkim.SignerConfig{Domain: "signed.example", Keys: []dkim.Key{{Selector: "s1", Signer: testKeys(t).list}}})
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: Sam <sam@signed.example>\r\nTo: info@ours.test\r\nSubject: signed\r\n" +
		"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <3@signed.example>\r\n\r\nHello.\r\n"
	sig, err := signer.Sign([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return string(sig) + msg
}

// A plugin that tags the Subject breaks the author's signature, so that
// the destination's DMARC check of the author's domain fails after all,
// although it passed here by DKIM; with rewrite_signed the From is
// rewritten, and our signature is what the destination's check rests on.
func TestSubjectTagBreaksAuthorSignature(t *testing.T) {
	tagger := fmt.Sprintf(`
[[plugin]]
name = "subjecttag"
path = %q
capabilities = ["headers"]
[[plugin.config.rule]]
tag = "[EXTERNAL]"
`, wasmbuild.ForTest(t, "./examples/subjecttag"))
	for _, rewriteSigned := range []bool{false, true} {
		e := startFromRewrite(t, fmt.Sprintf("rewrite_signed = %v", rewriteSigned), tagger)
		if err := e.send(t, "sam@signed.example", "info@ours.test", signedBySam(t)); err != nil {
			t.Fatal(err)
		}
		got := e.dest.deliveries()[0].data
		if s := fieldValue(got, "Subject"); s != "[EXTERNAL] signed" {
			t.Fatalf("Subject %q, want it tagged", s)
		}
		if ar := fieldValue(got, "Authentication-Results"); !strings.Contains(ar, "dkim=pass") || !strings.Contains(ar, "header.d=signed.example") {
			t.Errorf("Authentication-Results %q: want the author's signature passing here", ar)
		}
		// The destination, verifying as dkimpy does, finds our two
		// signatures good and the author's broken.
		records := map[string]string{"s1._domainkey.signed.example.": mustTXT(t, e.resolver(t), "s1._domainkey.signed.example")}
		for sel := range e.keys {
			records[sel+"._domainkey.ours.test."] = e.keys[sel]
		}
		if res := dkimpy.Check(t, got, records); len(res.DKIM) != 3 || !res.DKIM[0] || !res.DKIM[1] || res.DKIM[2] {
			t.Errorf("dkimpy: DKIM results %v, want ours valid and the author's broken by the tag", res.DKIM)
		}
		from := fieldValue(got, "From")
		if rewritten := strings.Contains(from, "sam_at_signed.example_"); rewritten != rewriteSigned {
			t.Errorf("rewrite_signed = %v: From %q", rewriteSigned, from)
		}
		if rewriteSigned {
			e.checkForwarded(t, got, 1)
		}
	}
}
