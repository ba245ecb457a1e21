package dkim

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// customDomain is a domain whose mail we sign with its own key; its DMARC
// record asks for strict alignment, which only its own d= meets.
const customDomain = "custom.example"

// domainSigner signs for testDomain with both test keys and for
// customDomain with the Ed25519 one under selector c1 (a domain's key may
// be any key; the d= and the published record are what differ).
func domainSigner(t *testing.T) (*Signer, map[string]string) {
	t.Helper()
	keys := testKeys(t)
	custom := Key{Domain: "Custom.Example", Selector: "c1", Signer: keys[1].Signer}
	s, err := NewSigner(SignerConfig{Domain: testDomain, Keys: append(keys, custom)})
	if err != nil {
		t.Fatal(err)
	}
	records := txtRecords(t, testDomain, keys)
	for name, txt := range txtRecords(t, customDomain, []Key{custom}) {
		records[name] = txt
	}
	return s, records
}

// fromMessage is testMessage From an address at domain.
func fromMessage(domain string) string {
	return strings.Replace(testMessage, "From: Alice <alice@example.net>", "From: Alice <alice@"+domain+">", 1)
}

// SignAs signs with the From domain's own keys first, then the
// gateway's; a domain without keys of its own, and Sign, get the
// gateway's alone. A destination verifies each signature (ours and
// dkimpy, against keys served by a real DNS server), and DMARC, strict,
// finds the custom domain's signature aligned with its From.
func TestSignAsDomainKeys(t *testing.T) {
	s, records := domainSigner(t)
	zone := txtZone(records) + `_dmarc.custom.example. 300 IN TXT "v=DMARC1; p=reject; adkim=s"` + "\n"
	server, lookup := startDNS(t, zone)
	r, err := resolver.New(resolver.Config{Nameservers: []string{server.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	// What a destination finds in DNS, for dkimpy.
	published := map[string]string{}
	for name := range records {
		txts, err := lookup(context.Background(), name)
		if err != nil || len(txts) != 1 {
			t.Fatalf("TXT %s: %v %v", name, txts, err)
		}
		published[name] = txts[0]
	}

	sign := func(from string, as bool) string {
		msg := fromMessage(from)
		var sigs []byte
		var err error
		if as {
			sigs, err = s.SignAs([]byte(msg), from)
		} else {
			sigs, err = s.Sign([]byte(msg))
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(sigs) + msg
	}
	for _, c := range []struct {
		name, from string
		as         bool
		want       []string // d=/s= of each signature, top one first
		aligned    bool     // DMARC (adkim=s) passes on DKIM
	}{
		{"own key", customDomain, true, []string{"custom.example/c1", testDomain + "/rsa1", testDomain + "/ed1"}, true},
		{"own key, any case", "CUSTOM.example", true, []string{"custom.example/c1", testDomain + "/rsa1", testDomain + "/ed1"}, true},
		{"no key", "nokey.example", true, []string{testDomain + "/rsa1", testDomain + "/ed1"}, false},
		{"subdomain", "sub." + customDomain, true, []string{testDomain + "/rsa1", testDomain + "/ed1"}, false},
		{"gateway's own", testDomain, true, []string{testDomain + "/rsa1", testDomain + "/ed1"}, false},
		{"Sign", customDomain, false, []string{testDomain + "/rsa1", testDomain + "/ed1"}, false},
	} {
		signed := sign(c.from, c.as)
		var got []string
		var ids dmarc.Identifiers
		for _, tags := range signatureTags(t, signed) {
			got = append(got, tags["d"]+"/"+tags["s"])
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: signatures %v, want %v", c.name, got, c.want)
		}
		results := verifyString(t, signed, lookup)
		for i, res := range results {
			if res.Result != "pass" {
				t.Errorf("%s: signature %d (d=%s): %s %s", c.name, i, res.Domain, res.Result, res.Reason)
			}
			ids.DKIM = append(ids.DKIM, dmarc.DKIMResult{Result: res.Result, Domain: res.Domain})
		}
		if py := dkimpy.Check(t, []byte(signed), published).DKIM; len(py) != len(c.want) || slices.Contains(py, false) {
			t.Errorf("%s: dkimpy: %v, want %d signatures verified", c.name, py, len(c.want))
		}
		if c.from == customDomain {
			res := dmarc.Evaluate(context.Background(), r, dmarc.TreeWalk, customDomain, ids)
			if res.DKIMAligned != c.aligned || (res.Result == dmarc.Pass) != c.aligned {
				t.Errorf("%s: DMARC %s, DKIM aligned %v (%s); want aligned %v", c.name, res.Result, res.DKIMAligned, res.Reason, c.aligned)
			}
		}
	}
}

// SignParts with domains is SignAs for a message in two pieces, the
// forwarder's way of adding the recipient domain's signature.
func TestSignPartsDomains(t *testing.T) {
	s, _ := domainSigner(t)
	s.now = fixedClockSigner(t).now
	msg := fromMessage("example.net")
	as, err := s.SignAs([]byte(msg), customDomain)
	if err != nil {
		t.Fatal(err)
	}
	header, body, _ := strings.Cut(msg, "\r\n\r\n")
	parts, err := s.SignParts(message.ParseHeader([]byte(header+"\r\n")), NewBody([]byte(body)), customDomain, customDomain, "nokey.example")
	if err != nil {
		t.Fatal(err)
	}
	if string(parts) != string(as) {
		t.Errorf("SignParts with the domain twice and one without keys:\n%s\nSignAs:\n%s", parts, as)
	}
	if !s.HasKeys("custom.EXAMPLE") || s.HasKeys(testDomain) || s.HasKeys("nokey.example") {
		t.Error("HasKeys: want true for the custom domain only")
	}
}

// A From domain in UTF-8 (RFC 6531) finds the key of its A-label form,
// which the d= names.
func TestSignAsInternationalDomain(t *testing.T) {
	keys := testKeys(t)
	s, err := NewSigner(SignerConfig{Domain: testDomain, Keys: append(keys, Key{Domain: "xn--bcher-kva.example", Selector: "b1", Signer: keys[1].Signer})})
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"bücher.example", "BÜCHER.example.", "xn--bcher-kva.example"} {
		sigs, err := s.SignAs([]byte(testMessage), from)
		if err != nil {
			t.Fatal(err)
		}
		if tags := signatureTags(t, string(sigs)+testMessage); len(tags) != 3 || tags[0]["d"] != "xn--bcher-kva.example" || tags[0]["s"] != "b1" {
			t.Errorf("SignAs %s: %v, want the b1 signature of xn--bcher-kva.example first", from, tags)
		}
	}
}
