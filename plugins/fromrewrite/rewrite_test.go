package main

import (
	"encoding/base64"
	"errors"
	"mime"
	"net/mail"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

const testConfig = `
domain = "your-domain.test"
secret = "test-secret-0123456789"
`

// newPlugin configures the plugin as the gateway of your-domain.test does.
func newPlugin(t testing.TB, config string) *sdktest.Plugin {
	t.Helper()
	return sdktest.New(t, &plugin{}, config, sdktest.Domains("your-domain.test", "other.test"))
}

// describe writes a verdict the way the README's tables do: the fields it
// sets, or its action.
func describe(v sdk.Verdict) string {
	switch {
	case v.Destination != "":
		return "forward to " + v.Destination
	case v.Action != abi.Continue:
		return sdktest.Describe(v)
	case len(v.AddHeaders) == 0 && len(v.RemoveHeaders) == 0:
		return "continue"
	}
	var parts []string
	for _, h := range v.AddHeaders {
		if h.Name != resultsField {
			parts = append(parts, h.Name+": "+h.Value)
		}
	}
	return strings.Join(parts, ", ")
}

// passing is a data request for a message from example.org whose DMARC
// passed here by SPF alone, under policy p.
func passing(p string) *sdk.Request {
	return &sdk.Request{
		Stage: abi.StageData, SessionID: "s1", MailFrom: "alice@example.org", Rcpts: []string{"info@your-domain.test"},
		Auth: abi.Auth{
			SPF: abi.SPF{Result: "pass", Domain: "example.org"},
			DMARC: abi.DMARC{Result: "pass", FromDomain: "example.org", PolicyDomain: "example.org", Policy: p, Pct: 100,
				SPFAligned: true, Reason: "SPF (example.org) aligns with example.org"},
		},
	}
}

// data runs the data stage on a message with these header fields.
func data(t *testing.T, p *sdktest.Plugin, req *sdk.Request, header string) sdk.Verdict {
	t.Helper()
	p.SetMessage([]byte(header + "Subject: hi\r\n\r\nHello.\r\n"))
	return p.Handle(t, req)
}

// field returns the value of the field the verdict adds under name.
func field(v sdk.Verdict, name string) string {
	for _, h := range v.AddHeaders {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

func TestRewritesWithoutAlignedDKIM(t *testing.T) {
	p := newPlugin(t, testConfig)
	v := data(t, p, passing("reject"), "From: Alice <alice@example.org>\r\n")
	want := `"Alice via your-domain.test" <alice_at_example.org_` + tag([]byte("test-secret-0123456789"), "alice@example.org") + `@your-domain.test>`
	if got := field(v, "From"); got != want {
		t.Errorf("From = %q, want %q", got, want)
	}
	if len(v.RemoveHeaders) != 1 || v.RemoveHeaders[0] != "From" {
		t.Errorf("removes %q, want the From field", v.RemoveHeaders)
	}
	if got := field(v, "Reply-To"); got != "Alice <alice@example.org>" {
		t.Errorf("Reply-To = %q, want the original From", got)
	}
	ar := field(v, resultsField)
	if !strings.HasPrefix(ar, "dmarc=pass (p=reject, SPF example.org aligns with example.org; From rewritten to alice_at_example.org_") ||
		!strings.HasSuffix(ar, ") header.from=example.org") {
		t.Errorf("Authentication-Results entry %q", ar)
	}
	// Quarantine too.
	if got := field(data(t, p, passing("quarantine"), "From: Alice <alice@example.org>\r\n"), "From"); got != want {
		t.Errorf("p=quarantine: From = %q, want %q", got, want)
	}
}

// What the destination's DMARC check would pass, or what must not carry
// our name, is left alone.
func TestLeavesAlone(t *testing.T) {
	p := newPlugin(t, testConfig)
	cases := map[string]func(r *sdk.Request){
		"aligned DKIM":        func(r *sdk.Request) { r.Auth.DMARC.DKIMAligned = true },
		"p=none":              func(r *sdk.Request) { r.Auth.DMARC.Policy = "none" },
		"no DMARC record":     func(r *sdk.Request) { r.Auth.DMARC = abi.DMARC{Result: "none", FromDomain: "example.org"} },
		"DMARC failed":        func(r *sdk.Request) { r.Auth.DMARC.Result, r.Auth.DMARC.SPFAligned = "fail", false },
		"DMARC temperror":     func(r *sdk.Request) { r.Auth.DMARC.Result = "temperror" },
		"not checked":         func(r *sdk.Request) { r.Auth = abi.Auth{} },
		"from our own domain": func(r *sdk.Request) { r.Auth.DMARC.FromDomain = "other.test" },
	}
	for name, change := range cases {
		req := passing("reject")
		change(req)
		if v := data(t, p, req, "From: Alice <alice@example.org>\r\n"); describe(v) != "continue" {
			t.Errorf("%s: %s, want continue", name, describe(v))
		}
	}
	// Mail whose From the plugin cannot map, or not the way DMARC read it.
	for _, from := range []string{
		"From: \"alice smith\"@example.org\r\n",                        // a quoted local part
		"From: a@example.org, b@example.org\r\n",                       // two authors
		"From: Alice <alice@example.org>\r\nFrom: bob@example.org\r\n", // two From fields
		"From: Alice <alice@elsewhere.example>\r\n",                    // not the domain DMARC checked
		"From: undisclosed\r\n",                                        // no address
		"From: jörg@example.org\r\n",                                   // non-ASCII without SMTPUTF8
		"From: Alice (\x01) <alice@example.org>\r\n",                   // a control character
	} {
		if v := data(t, p, passing("reject"), from); describe(v) != "continue" {
			t.Errorf("%q: %s, want continue", from, describe(v))
		}
	}
}

// With rewrite_signed, an aligned signature does not stop the rewrite: for
// chains whose plugins change fields the author signed.
func TestRewriteSigned(t *testing.T) {
	p := newPlugin(t, testConfig+"rewrite_signed = true\n")
	req := passing("reject")
	req.Auth.DMARC.DKIMAligned = true
	v := data(t, p, req, "From: alice@example.org\r\n")
	if field(v, "From") == "" {
		t.Errorf("aligned DKIM with rewrite_signed: %s, want From rewritten", describe(v))
	}
	if ar := field(v, resultsField); !strings.Contains(ar, ": rewrite_signed, the author's signature may not survive our changes)") {
		t.Errorf("Authentication-Results entry %q, want the reason", ar)
	}
}

func TestKeepsReplyTo(t *testing.T) {
	p := newPlugin(t, testConfig)
	v := data(t, p, passing("reject"), "From: Alice <alice@example.org>\r\nReply-To: list@lists.example.net\r\n")
	if field(v, "From") == "" {
		t.Fatalf("%s, want From rewritten", describe(v))
	}
	if field(v, "Reply-To") != "" {
		t.Errorf("adds Reply-To %q to a message that has one", field(v, "Reply-To"))
	}
	for _, h := range v.RemoveHeaders {
		if strings.EqualFold(h, "Reply-To") {
			t.Error("removes the message's Reply-To")
		}
	}
}

// Display names: quoted, RFC 2047 encoded in and out, none at all, and in
// a charset we cannot decode, which is kept as written.
func TestDisplayNames(t *testing.T) {
	p := newPlugin(t, testConfig)
	addr := "<alice_at_example.org_" + tag([]byte("test-secret-0123456789"), "alice@example.org") + "@your-domain.test>"
	dec := &mime.WordDecoder{}
	cases := []struct{ from, wantName, wantRaw string }{
		{"alice@example.org", "alice at example.org via your-domain.test", `"alice at example.org via your-domain.test" ` + addr},
		{`"Smith, Alice" <alice@example.org>`, "Smith, Alice via your-domain.test", `"Smith, Alice via your-domain.test" ` + addr},
		{`"Alice \"Al\" Smith" <alice@example.org>`, `Alice "Al" Smith via your-domain.test`, `"Alice \"Al\" Smith via your-domain.test" ` + addr},
		{"=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <alice@example.org>", "Jörg Müller via your-domain.test", ""},
		{"=?ISO-8859-1?Q?J=F6rg?= <alice@example.org>", "Jörg via your-domain.test", ""},
		// RFC 6532: UTF-8 as it is in the name.
		{"Jörg <alice@example.org>", "Jörg via your-domain.test", ""},
		// Outside what we decode: kept as written, our words in a quoted string.
		{"=?windows-1252?Q?J=F6rg?= <alice@example.org>", "", `=?windows-1252?Q?J=F6rg?= "via your-domain.test" ` + addr},
		// Line breaks in a name stay encoded.
		{"=?utf-8?q?a=0D=0Ab?= <alice@example.org>", "a\r\nb via your-domain.test", ""},
		// A name long enough to need several encoded words.
		{"=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("ü", 60))) + "?= <alice@example.org>", strings.Repeat("ü", 60) + " via your-domain.test", ""},
	}
	for _, c := range cases {
		v := data(t, p, passing("reject"), "From: "+c.from+"\r\n")
		got := field(v, "From")
		if c.wantRaw != "" && got != c.wantRaw {
			t.Errorf("From: %s: rewritten to %q, want %q", c.from, got, c.wantRaw)
		}
		for _, r := range got {
			if r >= 0x80 {
				t.Errorf("From: %s: rewritten to %q, which is not ASCII", c.from, got)
				break
			}
		}
		if c.wantName == "" {
			continue
		}
		a, err := (&mail.AddressParser{WordDecoder: dec}).Parse(got)
		if err != nil {
			t.Errorf("From: %s: rewritten to %q, which does not parse: %v", c.from, got, err)
			continue
		}
		if a.Name != c.wantName || "<"+a.Address+">" != addr {
			t.Errorf("From: %s: rewritten to name %q address %q, want %q %s", c.from, a.Name, a.Address, c.wantName, addr)
		}
	}
}

// An SMTPUTF8 message may have a UTF-8 local part; its reply address keeps
// it, and routes back.
func TestInternationalisedAuthor(t *testing.T) {
	p := newPlugin(t, testConfig)
	req := passing("reject")
	req.UTF8 = true
	req.Auth.DMARC.FromDomain = "xn--bcher-kva.example"
	v := data(t, p, req, "From: Jörg <jörg@bücher.example>\r\n")
	a, err := mail.ParseAddress(field(v, "From"))
	if err != nil {
		t.Fatalf("From %q: %v", field(v, "From"), err)
	}
	if !strings.HasPrefix(a.Address, "jörg_at_xn--bcher-kva.example_") {
		t.Errorf("reply address %q, want the local part kept and the domain in A-labels", a.Address)
	}
	if got := describe(p.Handle(t, &sdk.Request{Stage: abi.StageRcpt, UTF8: true, Rcpt: a.Address})); got != "forward to jörg@xn--bcher-kva.example" {
		t.Errorf("a reply to %s: %s", a.Address, got)
	}
}

// Replies to a reply address reach the author; an address in that form
// that we did not mint is refused, so that nobody can make us relay.
func TestReplyRoute(t *testing.T) {
	p := newPlugin(t, testConfig)
	v := data(t, p, passing("reject"), "From: Alice <Alice.Smith@example.org>\r\n")
	a, err := mail.ParseAddress(field(v, "From"))
	if err != nil {
		t.Fatal(err)
	}
	rcpt := func(to string) string {
		return describe(p.Handle(t, &sdk.Request{Stage: abi.StageRcpt, Rcpt: to}))
	}
	if got := rcpt(a.Address); got != "forward to Alice.Smith@example.org" {
		t.Errorf("reply to %s: %s", a.Address, got)
	}
	// A relay that changes case does not break it.
	if got := rcpt(strings.ToUpper(a.Address)); got != "forward to ALICE.SMITH@EXAMPLE.ORG" {
		t.Errorf("reply to %s: %s", strings.ToUpper(a.Address), got)
	}
	local, _ := splitAddress(a.Address)
	refused := func(to string) string { return "reject 550 5.1.1 <" + to + ">: no such reply address here" }
	for _, forged := range []string{
		"bob_at_victim.example_aaaaaaaa@your-domain.test",                                                       // a guess
		strings.Replace(local, "Alice", "Bob", 1) + "@your-domain.test",                                         // someone else, with Alice's tag
		strings.Replace(a.Address, "example.org", "example.net", 1),                                             // another domain, with Alice's tag
		"alice_at_example.org_" + tag([]byte("another-secret-0123"), "alice@example.org") + "@your-domain.test", // another key
	} {
		if got := rcpt(forged); got != refused(forged) {
			t.Errorf("forged %s: %s, want refused", forged, got)
		}
	}
	// Other recipients are the router's.
	for _, other := range []string{
		"info@your-domain.test",
		"a_at_b@your-domain.test",               // no tag
		"a_at_b.example_short@your-domain.test", // a tag of the wrong length
		"alice_at_example.org_" + tag([]byte("test-secret-0123456789"), "alice@example.org") + "@other.test",
	} {
		if got := rcpt(other); got != "continue" {
			t.Errorf("%s: %s, want continue", other, got)
		}
	}
}

// A secret moved to old_secrets still routes the replies minted with it.
func TestSecretRotation(t *testing.T) {
	old := newPlugin(t, testConfig)
	a, err := mail.ParseAddress(field(data(t, old, passing("reject"), "From: alice@example.org\r\n"), "From"))
	if err != nil {
		t.Fatal(err)
	}
	rotated := newPlugin(t, "domain = \"your-domain.test\"\nsecret = \"a-new-secret-0123456789\"\nold_secrets = [\"test-secret-0123456789\"]\n")
	if got := describe(rotated.Handle(t, &sdk.Request{Stage: abi.StageRcpt, Rcpt: a.Address})); got != "forward to alice@example.org" {
		t.Errorf("reply minted with the old secret: %s", got)
	}
	dropped := newPlugin(t, "domain = \"your-domain.test\"\nsecret = \"a-new-secret-0123456789\"\n")
	if got := describe(dropped.Handle(t, &sdk.Request{Stage: abi.StageRcpt, Rcpt: a.Address})); !strings.HasPrefix(got, "reject 550") {
		t.Errorf("reply minted with a dropped secret: %s, want refused", got)
	}
}

// Every reply address is a dot-atom, whatever dot-atom the author had.
func TestMintedAddressesAreDotAtoms(t *testing.T) {
	s := &signer{domain: "your-domain.test", secrets: [][]byte{[]byte("k")}}
	for _, local := range []string{"a", "a.b", "x_at", "a_at_b.example", "!#$%&'*+-/=?^_`{|}~", "o'brien"} {
		addr, ok := s.mint(local, "example.org", false)
		if !ok {
			t.Errorf("%s@example.org: no reply address", local)
			continue
		}
		l, _ := splitAddress(addr)
		if !dotAtom(l, false) {
			t.Errorf("%s@example.org: reply address %s is not a dot-atom", local, addr)
		}
		if author, minted, ok := s.reply(l); !minted || !ok || author != local+"@example.org" {
			t.Errorf("%s: stands for %q (%v, %v), want %s@example.org", addr, author, minted, ok, local)
		}
	}
	for _, local := range []string{"", ".a", "a.", "a..b", "a b", "a\"b", "a@b", "a\\b", "jörg"} {
		if addr, ok := s.mint(local, "example.org", false); ok {
			t.Errorf("%q@example.org: reply address %s, want none", local, addr)
		}
	}
	if addr, ok := s.mint("a", "under_score.example", false); ok {
		t.Errorf("a domain with an underscore: reply address %s, want none", addr)
	}
	if addr, ok := s.mint(strings.Repeat("a", 230), "example.org", false); ok {
		t.Errorf("a reply address of %d octets, over a path's limit", len(addr))
	}
}

func TestConfigErrors(t *testing.T) {
	for config, key := range map[string]string{
		`secret = "test-secret-0123456789"`:                                      "domain",
		`domain = "not a domain"` + "\n" + `secret = "test-secret-0123456789"`:   "domain",
		`domain = "elsewhere.test"` + "\n" + `secret = "test-secret-0123456789"`: "domain",
		`domain = "your-domain.test"`:                                            "secret",
		`domain = "your-domain.test"` + "\n" + `secret = "short"`:                "secret",
		testConfig + `old_secrets = ["test-secret-0123456789"]`:                  "old_secrets",
		testConfig + `via = "through"`:                                           "via",
		testConfig + `rewrite_signed = "yes"`:                                    "rewrite_signed",
	} {
		_, err := sdktest.Configure(&plugin{}, config, sdktest.Domains("your-domain.test"))
		var se *sdk.SettingError
		if err == nil {
			t.Errorf("%q: configured, want an error at %s", config, key)
		} else if !errors.As(err, &se) || se.Key != key {
			t.Errorf("%q: %v, want an error at %s", config, err, key)
		}
	}
	// A domain in U-labels is the same domain.
	if _, err := sdktest.Configure(&plugin{}, "domain = \"Bücher.example\"\nsecret = \"test-secret-0123456789\"\n", sdktest.Domains("xn--bcher-kva.example")); err != nil {
		t.Errorf("an IDN domain: %v", err)
	}
}
