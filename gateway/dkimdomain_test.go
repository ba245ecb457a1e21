package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
)

// startCustomKey starts a gateway serving ours.test and custom.test, with
// a key of custom.test's own (selector c1, published, listed first) besides the
// gateway's, and [dkim] sign_recipient_domain set to on.
func startCustomKey(t *testing.T, on bool) *env {
	t.Helper()
	key := testKeys(t).list // RSA, as the gateway's first key, which seals
	pem, _ := dkim.MarshalKey(key)
	path := filepath.Join(t.TempDir(), "custom.pem")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, envOptions{
		domains: `["ours.test", "custom.test"]`,
		dkim:    fmt.Sprintf("sign_recipient_domain = %v\n[[dkim.key]]\ndomain = \"custom.test\"\nselector = \"c1\"\nfile = %q", on, path),
		plugins: routerPlugin(t) + `
[[plugin.config.rule]]
match = "info@custom.test"
action = "forward"
to = "me@dest.test"
`,
	})
	txt, _ := dkim.TXTRecord(key)
	e.addRecords(t, fmt.Sprintf("c1._domainkey.custom.test. 300 IN TXT %s\n", splitTXT(txt)))
	return e
}

// deliveredSignatures is the d=/s= of each DKIM signature of the last
// message the destination took, top one first, after checking that each
// verifies, with go-msgauth and with dkimpy, against the keys e's DNS
// server publishes.
func (e *env) deliveredSignatures(t *testing.T) []string {
	t.Helper()
	d := e.dest.deliveries()
	msg := d[len(d)-1].data
	res := e.resolver(t)
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(context.Background(), name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature of %s: %v", v.Domain, v.Err)
		}
	}
	var got []string
	records := map[string]string{}
	for _, f := range fields(msg, "DKIM-Signature") {
		tags := map[string]string{}
		for _, spec := range strings.Split(f, ";") {
			if name, value, ok := strings.Cut(spec, "="); ok {
				tags[strings.TrimSpace(name)] = strings.TrimSpace(value)
			}
		}
		name := tags["s"] + "._domainkey." + tags["d"]
		records[name] = mustTXT(t, res, name)
		got = append(got, tags["d"]+"/"+tags["s"])
	}
	if len(vs) != len(got) {
		t.Errorf("go-msgauth verified %d signatures of %v", len(vs), got)
	}
	if py := dkimpy.Check(t, msg, records).DKIM; len(py) != len(got) || slices.Contains(py, false) {
		t.Errorf("dkimpy: %v, want all of %v verified", py, got)
	}
	return got
}

// Forwarded mail carries the gateway's signatures; with [dkim]
// sign_recipient_domain, those of the served domain it was addressed to
// too, when it has a key (as Cloudflare's Email Routing signs for the
// customer's recipient domain), but not when the transaction's recipients
// are at several domains, whose d= would tell each about the others.
func TestForwardSignsRecipientDomain(t *testing.T) {
	const msg = "From: Alice <alice@example.org>\r\nTo: info@custom.test\r\nSubject: hi\r\n\r\nHello.\r\n"
	ours := []string{"ours.test/rsa", "ours.test/ed"}

	e := startCustomKey(t, true)
	if err := e.send(t, "alice@example.org", "info@custom.test", msg); err != nil {
		t.Fatal(err)
	}
	if got, want := e.deliveredSignatures(t), append([]string{"custom.test/c1"}, ours...); !slices.Equal(got, want) {
		t.Errorf("sign_recipient_domain, to custom.test: signatures %v, want %v", got, want)
	}
	// The ARC seal is the gateway's, with its first RSA key, although
	// custom.test's key comes first in gateway.toml.
	d := e.dest.deliveries()
	chain := arc.Verify(context.Background(), d[len(d)-1].data, arc.VerifyOptions{Lookup: e.resolver(t).LookupTXT})
	if chain.CV != "pass" || len(chain.Sealers) != 1 || chain.Sealers[0].Domain != "ours.test" || chain.Sealers[0].Selector != "rsa" {
		t.Errorf("ARC chain %+v, want pass, sealed by ours.test with selector rsa", chain)
	}
	if err := e.send(t, "alice@example.org", "info@ours.test", msg); err != nil {
		t.Fatal(err)
	}
	if got := e.deliveredSignatures(t); !slices.Equal(got, ours) {
		t.Errorf("sign_recipient_domain, to ours.test (the gateway's own): signatures %v, want %v", got, ours)
	}
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"info@custom.test", "info@ours.test"} {
		if err := c.Rcpt(to, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sendData(t, c, msg); err != nil {
		t.Fatal(err)
	}
	if got := e.deliveredSignatures(t); !slices.Equal(got, ours) {
		t.Errorf("sign_recipient_domain, to custom.test and ours.test: signatures %v, want %v", got, ours)
	}

	// Off, the default: the gateway's alone.
	e = startCustomKey(t, false)
	if err := e.send(t, "alice@example.org", "info@custom.test", msg); err != nil {
		t.Fatal(err)
	}
	if got := e.deliveredSignatures(t); !slices.Equal(got, ours) {
		t.Errorf("to custom.test: signatures %v, want %v", got, ours)
	}
}
