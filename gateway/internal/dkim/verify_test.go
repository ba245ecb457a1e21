package dkim

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// conformanceDir is the project's copy of the public DKIM test material.
const conformanceDir = "../../../testdata/conformance/dkim/"

// txtZone writes records (name to TXT value) as zone-file lines, each value
// split into strings of at most 255 bytes, as DNS requires.
func txtZone(records map[string]string) string {
	var b strings.Builder
	for name, value := range records {
		fmt.Fprintf(&b, "%s. 300 IN TXT", name)
		for value != "" {
			n := min(len(value), 255)
			fmt.Fprintf(&b, " %q", value[:n])
			value = value[n:]
		}
		if len(records[name]) == 0 {
			b.WriteString(` ""`)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// startDNS serves zone from a real DNS server on loopback and returns the
// server and a lookup through the resolver the gateway uses.
func startDNS(t testing.TB, zone string) (*dnstest.Server, TXTLookup) {
	t.Helper()
	s := dnstest.Start(t, zone)
	r, err := resolver.New(resolver.Config{Nameservers: []string{s.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	return s, r.LookupTXT
}

func verifyString(t testing.TB, msg string, lookup TXTLookup) []Result {
	t.Helper()
	return Verify(context.Background(), []byte(msg), VerifyOptions{Lookup: lookup})
}

// resultWords returns the Result of each signature, for short comparisons.
func resultWords(rs []Result) []string {
	var words []string
	for _, r := range rs {
		words = append(words, r.Result)
	}
	return words
}

// readJSONRecords reads a conformance dns.json: either a flat map of name to
// TXT value (dkimpy) or name to {"TXT": [[strings...]]} (RFC 8463).
func readJSONRecords(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	records := map[string]string{}
	for name, v := range raw {
		if strings.HasPrefix(name, "_") {
			continue // "_comment"
		}
		var flat string
		if json.Unmarshal(v, &flat) == nil {
			records[name] = flat
			continue
		}
		var typed struct{ TXT [][]string }
		if err := json.Unmarshal(v, &typed); err != nil {
			t.Fatalf("%s: %s: %v", path, name, err)
		}
		if len(typed.TXT) == 1 && strings.HasPrefix(strings.Join(typed.TXT[0], ""), "v=DKIM1") {
			records[name] = strings.Join(typed.TXT[0], "")
		}
	}
	return records
}

func readConformance(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(conformanceDir + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestVerifyConformance verifies the stored public vectors, each with the
// result its source gives.
func TestVerifyConformance(t *testing.T) {
	dkimpyRecords := readJSONRecords(t, conformanceDir+"dkimpy/dns.json")
	// dkimpy's dnsfunc5 (test_dkim.py) also publishes test.txt here, for the
	// RSA signature of rfc6376.signed.msg; dns.json left it out.
	dkimpyRecords["test._domainkey.football.example.com"] = strings.TrimSpace(readConformance(t, "dkimpy/test.txt"))
	_, dkimpyLookup := startDNS(t, txtZone(dkimpyRecords))
	_, rfc8463Lookup := startDNS(t, txtZone(readJSONRecords(t, conformanceDir+"rfc8463/dns.json")))

	vectors := []struct {
		file   string
		lookup TXTLookup
		want   []string // per signature, top first; nil: not signed
		source string
	}{
		{"dkimpy/ed25519test2.msg", dkimpyLookup, []string{"pass"},
			"test_dkim_ed25519.py test_verify_third_party: the Exim-signed message verifies"},
		{"dkimpy/rfc6376.signed.msg", dkimpyLookup, []string{"pass", "pass"},
			"test_dkim_ed25519.py test_rfc8032_previous_verifies and test_dkim.py test_double_previous_verifies: the top (Ed25519) one verifies; the suite does not check the RSA one, which dkimpy 1.1.4 verifies"},
		{"dkimpy/test2.message", dkimpyLookup, []string{"pass"},
			"test_dkim.py test_degenerate_folding: ugly but legal folding verifies"},
		{"dkimpy/message.mbox", dkimpyLookup, []string{"permerror"},
			"signed by kitterman.com s=2007-00, whose key the suite does not publish (test_extra_headers only signs it again): no key"},
		{"dkimpy/ed25519test.msg", dkimpyLookup, nil, "test_verifies_nosig: an unsigned message does not verify"},
		{"dkimpy/rfc6376.msg", dkimpyLookup, nil, "unsigned input of the signing tests"},
		{"dkimpy/test.message", dkimpyLookup, nil, "test_dkim.py test_verifies_nosig"},
		{"dkimpy/test_extra.message", dkimpyLookup, nil, "unsigned input of the signing tests"},
		{"dkimpy/test_nofrom.message", dkimpyLookup, nil, "unsigned input of test_no_from_fails"},
		{"rfc8463/signed.eml", rfc8463Lookup, []string{"pass", "pass"},
			"RFC 8463 Appendix A.3: the example signed with Ed25519 and RSA; both verify"},
	}
	passed, total := 0, 0
	for _, v := range vectors {
		got := verifyString(t, readConformance(t, v.file), v.lookup)
		checks := max(len(v.want), 1)
		total += checks
		if !slices.Equal(resultWords(got), v.want) {
			t.Errorf("%s: got %+v, want %v (%s)", v.file, got, v.want, v.source)
			continue
		}
		for _, r := range got {
			if r.Result == "permerror" && r.Reason != "no key for signature" {
				t.Errorf("%s: reason %q, want no key for signature", v.file, r.Reason)
			}
		}
		passed += checks
	}
	t.Logf("DKIM conformance: %d/%d", passed, total)
}

// dkimpyJob is one signature for testdata/verify/dkimpy_sign.py to make.
type dkimpyJob struct {
	Message    string `json:"message"`
	Key        string `json:"key"`
	Selector   string `json:"selector"`
	Domain     string `json:"domain"`
	Canon      string `json:"canon"`
	Algorithm  string `json:"algorithm"`
	Length     bool   `json:"length"`
	AllHeaders bool   `json:"all_headers"`
}

// dkimpySign has dkimpy (Debian's python3-dkim) make the signatures for jobs,
// in one run.
func dkimpySign(t *testing.T, jobs []dkimpyJob) []string {
	t.Helper()
	out := dkimpy.Run(t, "testdata/verify/dkimpy_sign.py", dkimpy.WriteJSON(t, "jobs.json", jobs))
	var sigs []string
	if err := json.Unmarshal(out, &sigs); err != nil || len(sigs) != len(jobs) {
		t.Fatalf("dkimpy output %q: %v", out, err)
	}
	return sigs
}

// TestVerifyDkimpySigned has dkimpy sign the suite's messages with the suite's
// keys, in all four canonicalizations, and checks each result against the
// dkimpy test that makes the same signature.
func TestVerifyDkimpySigned(t *testing.T) {
	dir := conformanceDir + "dkimpy/"
	record := func(file string) string { return strings.TrimSpace(readConformance(t, "dkimpy/"+file)) }
	// The suite serves each key file under test._domainkey.example.com in
	// a different dnsfunc; here each gets its own selector.
	_, lookup := startDNS(t, txtZone(map[string]string{
		"test._domainkey.example.com":       record("test.txt"),
		"implicitk._domainkey.example.com":  record("test2.txt"),
		"badversion._domainkey.example.com": record("badversion.txt"),
		"badk._domainkey.example.com":       record("badk.txt"),
		"tlsrpt._domainkey.example.com":     record("test_tlsrpt.txt"),
		"bad._domainkey.example.com":        record("test_bad.txt"),
		"test._domainkey.example.net":       "v=DKIM1; k=ed25519; p=yi50DjK5O9pqbFpNHklsv9lqaS0ArSYu02qp1S0DW1Y=",
	}))
	rsaJob := func(selector, canon string) dkimpyJob {
		return dkimpyJob{Message: dir + "test.message", Key: dir + "test.private", Selector: selector,
			Domain: "example.com", Canon: canon, Algorithm: "rsa-sha256"}
	}
	type check struct {
		job    dkimpyJob
		edit   func(signed string) string // nil: the signed message as is
		want   []string
		source string
	}
	var checks []check
	for _, canon := range []string{"simple/simple", "simple/relaxed", "relaxed/simple", "relaxed/relaxed"} {
		ed := dkimpyJob{Message: dir + "ed25519test.msg", Key: dir + "ed25519test.key", Selector: "test",
			Domain: "example.net", Canon: canon, Algorithm: "ed25519-sha256"}
		mbox := rsaJob("test", canon)
		mbox.Message, mbox.AllHeaders = dir+"message.mbox", true
		checks = append(checks,
			check{rsaJob("test", canon), nil, []string{"pass"}, "test_dkim.py test_verifies"},
			check{ed, nil, []string{"pass"}, "test_dkim_ed25519.py test_verifies"},
			check{mbox, nil, []string{"pass", "permerror"}, "test_dkim.py test_extra_headers (the old signature has no key)"},
			check{rsaJob("implicitk", canon), nil, []string{"pass"}, "test_dkim.py test_implicit_k"},
			check{rsaJob("badversion", canon), nil, []string{"permerror"}, "test_dkim.py test_bad_version"},
			check{rsaJob("badk", canon), nil, []string{"permerror"}, "test_dkim.py test_unknown_k"},
			check{rsaJob("tlsrpt", canon), nil, []string{"permerror"}, "test_dkim_tlsrpt.py test_ignores_tlsrptsvc"},
			check{rsaJob("bad", canon), nil, []string{"permerror"}, "test_crypto.py test_parse_public_key rejects test_bad.txt"},
			check{rsaJob("test", canon), func(m string) string { return m + "foo" }, []string{"fail"},
				"test_dkim.py test_altered_body_fails"},
			check{rsaJob("test", canon), func(m string) string { return addToHeader(m, "X-Foo: bar\r\n") }, []string{"pass"},
				"test_dkim.py test_multiple_from_fails: an unsigned field may be added"},
			check{rsaJob("test", canon), func(m string) string {
				return addToHeader(m, "From: \"Resident Evil\" <sales@spammer.com>\r\n")
			}, []string{"fail"}, "test_dkim.py test_multiple_from_fails: a From at the end"},
		)
	}
	length := rsaJob("test", "relaxed/simple")
	length.Length = true
	// dkimpy accepts l= (test_add_body_length); Sluice does not, on purpose.
	checks = append(checks, check{length, nil, []string{"policy"}, "Sluice's own rule: l= is refused"})

	jobs := make([]dkimpyJob, len(checks))
	for i, c := range checks {
		jobs[i] = c.job
	}
	for i, sig := range dkimpySign(t, jobs) {
		c := checks[i]
		msg := sig + readConformance(t, strings.TrimPrefix(c.job.Message, conformanceDir))
		if c.edit != nil {
			msg = c.edit(msg)
		}
		got := verifyString(t, msg, lookup)
		if !slices.Equal(resultWords(got), c.want) {
			t.Errorf("%s %s s=%s: got %+v, want %v (%s)", filepath.Base(c.job.Message), c.job.Canon, c.job.Selector, got, c.want, c.source)
		}
	}
	// A From added at the top breaks the signature too (the other half of
	// test_multiple_from_fails).
	sig := dkimpySign(t, []dkimpyJob{rsaJob("test", "relaxed/relaxed")})[0]
	msg := "From: \"Resident Evil\" <sales@spammer.com>\r\n" + sig + readConformance(t, "dkimpy/test.message")
	if got := verifyString(t, msg, lookup); !slices.Equal(resultWords(got), []string{"fail"}) {
		t.Errorf("From added at the top: %+v, want fail", got)
	}
}

// addToHeader adds a field at the end of msg's header.
func addToHeader(msg, field string) string {
	for _, sep := range []string{"\r\n\r\n", "\n\n"} {
		if i := strings.Index(msg, sep); i >= 0 {
			return msg[:i+len(sep)/2] + field + msg[i+len(sep)/2:]
		}
	}
	return msg + field
}

// TestVerifyGoMsgauthSigned verifies what go-msgauth signs, in all four
// canonicalizations: a second independent signer.
func TestVerifyGoMsgauthSigned(t *testing.T) {
	keys := testKeys(t)
	_, lookup := startDNS(t, txtZone(txtRecords(t, testDomain, keys)))
	canons := []msgdkim.Canonicalization{msgdkim.CanonicalizationSimple, msgdkim.CanonicalizationRelaxed}
	emptyBody := "From: a@example.net\r\nSubject: empty\r\n\r\n"
	for _, msg := range []string{testMessage, emptyBody} {
		for _, k := range keys {
			for _, hc := range canons {
				for _, bc := range canons {
					var signed strings.Builder
					err := msgdkim.Sign(&signed, strings.NewReader(msg), &msgdkim.SignOptions{
						Domain: testDomain, Selector: k.Selector, Signer: k.Signer,
						HeaderCanonicalization: hc, BodyCanonicalization: bc,
					})
					if err != nil {
						t.Fatal(err)
					}
					got := verifyString(t, signed.String(), lookup)
					if len(got) != 1 || got[0].Result != "pass" {
						t.Errorf("%q %s %s/%s: %+v, want pass", msg[len(msg)-12:], k.Selector, hc, bc, got)
					}
				}
			}
		}
	}
}

// TestVerifyRoundTrip verifies our own signatures and checks every field of
// the results.
func TestVerifyRoundTrip(t *testing.T) {
	keys := testKeys(t)
	_, lookup := startDNS(t, txtZone(txtRecords(t, testDomain, keys)))
	signed := signMessage(t, newTestSigner(t, keys), testMessage)
	want := []Result{
		{Result: "pass", Domain: testDomain, Selector: "rsa1", Algorithm: "rsa-sha256", Identifier: "@" + testDomain},
		{Result: "pass", Domain: testDomain, Selector: "ed1", Algorithm: "ed25519-sha256", Identifier: "@" + testDomain},
	}
	if got := verifyString(t, signed, lookup); !slices.Equal(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}

	// A message with bare LF line ends is signed and verified as if they
	// were CRLF, whichever form the verifier sees.
	lf := strings.ReplaceAll(testMessage, "\r\n", "\n")
	signedLF := signMessage(t, newTestSigner(t, keys), lf)
	for name, msg := range map[string]string{"LF": signedLF, "CRLF": strings.ReplaceAll(signedLF, "\n", "\r\n")} {
		if got := resultWords(verifyString(t, msg, lookup)); !slices.Equal(got, []string{"pass", "pass"}) {
			t.Errorf("%s line ends: %v, want pass pass", name, got)
		}
	}
}

func TestVerifyNoSignature(t *testing.T) {
	_, lookup := startDNS(t, "")
	for _, msg := range []string{testMessage, "", "\r\n", "no header at all"} {
		if got := verifyString(t, msg, lookup); got != nil {
			t.Errorf("Verify(%q) = %+v, want nil", msg, got)
		}
	}
}

// TestVerifyDetectsTampering checks that changes to what was signed fail,
// and changes relays make do not.
func TestVerifyDetectsTampering(t *testing.T) {
	keys := testKeys(t)
	_, lookup := startDNS(t, txtZone(txtRecords(t, testDomain, keys)))
	signed := signMessage(t, newTestSigner(t, keys), testMessage)
	for _, c := range []struct {
		name   string
		edit   func(string) string
		result string
		reason string
	}{
		{"body", func(m string) string { return strings.Replace(m, "noon", "one", 1) }, "fail", "body hash did not verify"},
		{"signed header", func(m string) string { return strings.Replace(m, "Lunch on", "Dinner on", 1) }, "fail", "signature did not verify"},
		{"From added on top", func(m string) string { return "From: Mallory <m@example.com>\r\n" + m }, "fail", "signature did not verify"},
		{"From added below", func(m string) string { return addToHeader(m, "From: Mallory <m@example.com>\r\n") }, "fail", "signature did not verify"},
		{"signature tag changed", func(m string) string { return strings.Replace(m, "c=relaxed/relaxed", "c=relaxed/simple", 1) }, "fail", "body hash did not verify"},
		{"Received added", func(m string) string { return "Received: from relay.example by mx.example\r\n" + m }, "pass", ""},
		{"unsigned field added", func(m string) string { return addToHeader(m, "X-Spam: no\r\n") }, "pass", ""},
		{"refolded and recased", func(m string) string {
			m = strings.Replace(m, "Subject: Lunch on\r\n Thursday?", "SUBJECT:   Lunch   on Thursday?  ", 1)
			return strings.Replace(m, "Hi Bob,\r\n", "Hi   Bob, \r\n", 1) + "\r\n\r\n"
		}, "pass", ""},
	} {
		got := verifyString(t, c.edit(signed), lookup)
		for i, r := range got {
			if c.name == "signature tag changed" && i == 1 {
				continue // only the first signature was edited
			}
			if r.Result != c.result || r.Reason != c.reason {
				t.Errorf("%s: signature %d: %s (%s), want %s (%s)", c.name, i, r.Result, r.Reason, c.result, c.reason)
			}
		}
		if len(got) != 2 {
			t.Errorf("%s: %d results, want 2", c.name, len(got))
		}
	}
}

// signWith signs testMessage with key under selector.
func signWith(t *testing.T, key crypto.Signer, selector, msg string) string {
	t.Helper()
	s, err := NewSigner(SignerConfig{Domain: testDomain, Keys: []Key{{Selector: selector, Signer: key}}})
	if err != nil {
		t.Fatal(err)
	}
	return signMessage(t, s, msg)
}

// TestVerifyKeyRecords checks what the key record can say (RFC 6376 §3.6.1).
func TestVerifyKeyRecords(t *testing.T) {
	keys := testKeys(t)
	rsaKey, edKey := keys[0].Signer, keys[1].Signer
	edRecord, err := TXTRecord(edKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PublicKey(rsaKey.Public().(*rsa.PublicKey))
	records := map[string]string{
		"revoked":  "v=DKIM1; k=ed25519; p=",
		"wrongk":   edRecord,
		"testing":  edRecord + "; t=y",
		"strict":   edRecord + "; t=s",
		"sha1only": edRecord + "; h=sha1",
		"anysvc":   edRecord + "; s=*; h=sha1:sha256",
		"pkcs1":    "k=rsa; p=" + base64.StdEncoding.EncodeToString(pkcs1),
		"short":    "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsa512Public(t)),
		"notfirst": "k=ed25519; v=DKIM1; " + strings.TrimPrefix(edRecord, "v=DKIM1; k=ed25519; "),
		"edsize":   "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(make([]byte, 31)),
	}
	zone := map[string]string{}
	for sel, rec := range records {
		zone[sel+"._domainkey."+testDomain] = rec
	}
	_, lookup := startDNS(t, txtZone(zone))

	tampered := func(m string) string { return strings.Replace(m, "noon", "one", 1) }
	for _, c := range []struct {
		selector string
		key      crypto.Signer
		edit     func(string) string
		result   string
		reason   string
	}{
		{"revoked", edKey, nil, "permerror", "key revoked"},
		{"wrongk", rsaKey, nil, "permerror", "key type k=ed25519 does not fit a="},
		{"testing", edKey, nil, "neutral", "key is in testing mode t=y; signature verified"},
		{"testing", edKey, tampered, "neutral", "key is in testing mode t=y; body hash did not verify"},
		{"sha1only", edKey, nil, "permerror", "key does not allow sha256, h="},
		{"anysvc", edKey, nil, "pass", ""},
		{"strict", edKey, nil, "pass", ""}, // i= defaults to @d: exactly d=
		{"pkcs1", rsaKey, nil, "pass", ""},
		{"short", rsaKey, nil, "permerror", "RSA key has 512 bits, fewer than 1024, RFC 8301"},
		{"notfirst", edKey, nil, "permerror", "key record version is not DKIM1"},
		{"edsize", edKey, nil, "permerror", "Ed25519 key is not 32 bytes"},
	} {
		msg := signWith(t, c.key, c.selector, testMessage)
		if c.edit != nil {
			msg = c.edit(msg)
		}
		got := verifyString(t, msg, lookup)
		if len(got) != 1 || got[0].Result != c.result || got[0].Reason != c.reason {
			t.Errorf("%s: %+v, want %s (%s)", c.selector, got, c.result, c.reason)
		}
	}

	// t=s: an i= in a subdomain of d= is refused; without t=s it is fine.
	for sel, want := range map[string]string{"strict": "permerror", "anysvc": "pass"} {
		var signed strings.Builder
		err := msgdkim.Sign(&signed, strings.NewReader(testMessage), &msgdkim.SignOptions{
			Domain: testDomain, Selector: sel, Signer: edKey, Identifier: "alice@mail." + testDomain,
			HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
		})
		if err != nil {
			t.Fatal(err)
		}
		got := verifyString(t, signed.String(), lookup)
		if len(got) != 1 || got[0].Result != want || got[0].Identifier != "alice@mail."+testDomain {
			t.Errorf("i= in a subdomain, s=%s: %+v, want %s", sel, got, want)
		}
	}
}

// rsa512Public returns the DER public key of testdata/rsa512-pkcs1.pem, a key
// too short for DKIM.
func rsa512Public(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/rsa512-pkcs1.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestVerifyDNSErrors checks how each kind of lookup failure is reported.
func TestVerifyDNSErrors(t *testing.T) {
	edKey := testKeys(t)[1].Signer
	edRecord, err := TXTRecord(edKey)
	if err != nil {
		t.Fatal(err)
	}
	zone := txtZone(map[string]string{
		"twice._domainkey." + testDomain: edRecord,
		"ok._domainkey." + testDomain:    edRecord,
	}) + "twice._domainkey." + testDomain + ". 300 IN TXT \"v=DKIM1; p=\"\n" +
		"nodata._domainkey." + testDomain + ". 300 IN A 192.0.2.1\n"
	s, lookup := startDNS(t, zone)
	s.Fail("servfail._domainkey."+testDomain, dns.RcodeServerFailure)

	for _, c := range []struct {
		selector, result, reason string
	}{
		{"missing", "permerror", "no key for signature"}, // NXDOMAIN
		{"nodata", "permerror", "no key for signature"},
		{"twice", "permerror", "more than one key record at twice._domainkey." + testDomain},
		{"servfail", "temperror", "key lookup: server misbehaving: SERVFAIL"},
	} {
		got := verifyString(t, signWith(t, edKey, c.selector, testMessage), lookup)
		if len(got) != 1 || got[0].Result != c.result || got[0].Reason != c.reason {
			t.Errorf("%s: %+v, want %s (%s)", c.selector, got, c.result, c.reason)
		}
	}

	// A dropped query times out: temporary, like SERVFAIL.
	s.Drop("slow._domainkey." + testDomain)
	r, err := resolver.New(resolver.Config{Nameservers: []string{s.Addr()}, Timeout: 100 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := verifyString(t, signWith(t, edKey, "slow", testMessage), r.LookupTXT)
	if len(got) != 1 || got[0].Result != "temperror" {
		t.Errorf("timeout: %+v, want temperror", got)
	}

	// A session that ends ends the lookups; the result is temporary.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got = Verify(ctx, []byte(signWith(t, edKey, "ok", testMessage)), VerifyOptions{Lookup: lookup})
	if len(got) != 1 || got[0].Result != "temperror" {
		t.Errorf("cancelled context: %+v, want temperror", got)
	}
}

// TestVerifyExpiry checks x= against VerifyOptions.Now.
func TestVerifyExpiry(t *testing.T) {
	edKey := testKeys(t)[1]
	_, lookup := startDNS(t, txtZone(txtRecords(t, testDomain, []Key{edKey})))
	signedAt := time.Date(2020, 1, 1, 12, 0, 0, 0, time.UTC) // long past: the real clock would say expired
	s, err := NewSigner(SignerConfig{Domain: testDomain, Keys: []Key{edKey}, Expire: time.Hour,
		Now: func() time.Time { return signedAt }})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(signMessage(t, s, testMessage))
	for _, c := range []struct {
		now            time.Time
		result, reason string
	}{
		{signedAt.Add(30 * time.Minute), "pass", ""},
		{signedAt.Add(time.Hour), "pass", ""}, // x= itself is not past
		{signedAt.Add(time.Hour + time.Second), "permerror", "signature expired"},
	} {
		got := Verify(context.Background(), msg, VerifyOptions{Lookup: lookup, Now: func() time.Time { return c.now }})
		if len(got) != 1 || got[0].Result != c.result || got[0].Reason != c.reason {
			t.Errorf("at %v: %+v, want %s (%s)", c.now, got, c.result, c.reason)
		}
	}
	// Without Now, the real clock decides.
	if got := Verify(context.Background(), msg, VerifyOptions{Lookup: lookup}); len(got) != 1 || got[0].Reason != "signature expired" {
		t.Errorf("real clock: %+v, want signature expired", got)
	}
}

// TestVerifyMalformed checks that broken signature fields are permerror
// (l= is policy), without any DNS query.
func TestVerifyMalformed(t *testing.T) {
	s, lookup := startDNS(t, "")
	const bh = "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
	const b = "b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus"
	good := "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=forward.example; s=ed1; h=from:to; " + bh + "; " + b
	for _, c := range []struct {
		from, to string // replace in good
		result   string
		reason   string
	}{
		{"v=1", "v=2", "permerror", "signature version v= is not 1"},
		{"; " + bh, "", "permerror", "signature has no bh= tag"},
		{"h=from:to", "h=to:subject", "permerror", "From is not signed"},
		{"h=from:to", "h=from:t o", "permerror", "h= holds something other than field names"},
		{"a=ed25519-sha256", "a=rsa-sha1", "permerror", "rsa-sha1 is no longer accepted, RFC 8301"},
		{"a=ed25519-sha256", "a=hmac-sha256", "permerror", "unknown algorithm a="},
		{"c=relaxed/relaxed", "c=fancy/simple", "permerror", "unknown canonicalization c="},
		{"d=forward.example", "d=legitimate.com(.attacker.com", "permerror", "d= is not a domain name"},
		{"s=ed1", "s=ed1;x", "permerror", "malformed signature: not a list of tag=value"},
		{"s=ed1", "s=", "permerror", "s= is not a selector"},
		{"s=ed1", "s=ed1; i=alice@example.org", "permerror", "i= is not in the d= domain"},
		{"s=ed1", "s=ed1; i=alice@xforward.example", "permerror", "i= is not in the d= domain"},
		{"s=ed1", "s=ed1; q=http/well-known", "permerror", "no supported key query method in q="},
		{"s=ed1", "s=ed1; t=1700000000; x=1600000000", "permerror", "x= is not after t="},
		{"s=ed1", "s=ed1; x=soon", "permerror", "x= is not a time"},
		{"s=ed1", "s=ed1; t=1234567890123", "permerror", "t= is not a time"},
		{"s=ed1", "s=ed1; s=ed2", "permerror", "malformed signature: tag s= given twice"},
		{"s=ed1", "s=ed1; 1x=y", "permerror", "malformed signature: not a list of tag=value"},
		{b, "b=!!!", "permerror", "b= is not a base64 signature"},
		{b, "b=", "permerror", "b= is not a base64 signature"},
		{bh, "bh=%%", "permerror", "bh= is not base64"},
		{"s=ed1", "s=ed1; l=10", "policy", "body length limit l= not accepted"},
	} {
		field := strings.Replace(good, c.from, c.to, 1)
		got := verifyString(t, "DKIM-Signature: "+field+"\r\n"+testMessage, lookup)
		if len(got) != 1 || got[0].Result != c.result || got[0].Reason != c.reason {
			t.Errorf("%q: %+v, want %s (%s)", field, got, c.result, c.reason)
		}
	}
	// Whatever could be read is reported.
	got := verifyString(t, "DKIM-Signature: "+strings.Replace(good, "v=1", "v=2", 1)+"\r\n"+testMessage, lookup)
	if want := (Result{Result: "permerror", Domain: "forward.example", Selector: "ed1", Algorithm: "ed25519-sha256",
		Identifier: "@forward.example", Reason: "signature version v= is not 1"}); got[0] != want {
		t.Errorf("names of a malformed signature: %+v, want %+v", got[0], want)
	}
	if n := s.Queries(); n != 0 {
		t.Errorf("%d DNS queries for malformed signatures, want none", n)
	}
}

// TestVerifyMaxSignatures checks that only the first MaxSignatures are
// verified and the rest reported.
func TestVerifyMaxSignatures(t *testing.T) {
	edKey := testKeys(t)[1]
	_, lookup := startDNS(t, txtZone(txtRecords(t, testDomain, []Key{edKey})))
	s := newTestSigner(t, []Key{edKey})
	msg := testMessage
	for range 12 {
		msg = signMessage(t, s, msg)
	}
	for _, c := range []struct{ max, verified int }{{0, 10}, {3, 3}, {20, 12}} {
		got := Verify(context.Background(), []byte(msg), VerifyOptions{Lookup: lookup, MaxSignatures: c.max})
		if len(got) != 12 {
			t.Fatalf("max %d: %d results, want 12", c.max, len(got))
		}
		for i, r := range got {
			want := Result{Result: "pass", Domain: testDomain, Selector: "ed1", Algorithm: "ed25519-sha256", Identifier: "@" + testDomain}
			if i >= c.verified {
				want.Result, want.Reason = "permerror", "too many signatures"
			}
			if r != want {
				t.Errorf("max %d: signature %d: %+v, want %+v", c.max, i, r, want)
			}
		}
	}
}

// TestVerifyTooManyHeaderFields checks the bound on header fields.
func TestVerifyTooManyHeaderFields(t *testing.T) {
	edKey := testKeys(t)[1]
	_, lookup := startDNS(t, txtZone(txtRecords(t, testDomain, []Key{edKey})))
	// testMessage has 7 fields, the signature makes 8.
	filled := func(n int) string {
		return strings.Repeat("X-Filler: x\r\n", n) + testMessage
	}
	if got := verifyString(t, signWith(t, edKey.Signer, "ed1", filled(992)), lookup); len(got) != 1 || got[0].Result != "pass" {
		t.Errorf("1000 fields: %+v, want pass", got)
	}
	// Every signature is reported, also one far down a long header.
	signed := signWith(t, edKey.Signer, "ed1", filled(3000))
	signed = addToHeader(signed, strings.Replace(signed[:strings.Index(signed, "\r\nFrom:")+2], "s=ed1", "s=ed2", 1))
	got := verifyString(t, signed, lookup)
	if len(got) != 2 {
		t.Fatalf("%d results, want 2: %+v", len(got), got)
	}
	for i, sel := range []string{"ed1", "ed2"} {
		if got[i].Result != "permerror" || got[i].Reason != "message has more than 1000 header fields" || got[i].Selector != sel {
			t.Errorf("signature %d: %+v, want permerror for s=%s", i, got[i], sel)
		}
	}
	got = verifyString(t, signWith(t, edKey.Signer, "ed1", filled(993)), lookup)
	if len(got) != 1 || got[0].Result != "permerror" {
		t.Errorf("1001 fields: %+v, want permerror", got)
	}
}

// TestVerifySignedSignatureField checks h= naming DKIM-Signature: it means
// the other signature fields, never the one being verified, and like any
// name it also signs that there are no more such fields.
func TestVerifySignedSignatureField(t *testing.T) {
	edKey := testKeys(t)[1]
	_, lookup := startDNS(t, txtZone(txtRecords(t, testDomain, []Key{edKey})))
	s, err := NewSigner(SignerConfig{Domain: testDomain, Keys: []Key{edKey}, Headers: []string{"From", "DKIM-Signature"}})
	if err != nil {
		t.Fatal(err)
	}
	once := signMessage(t, s, testMessage) // signs that there is no other signature
	twice := signMessage(t, s, once)       // signs the first one
	if got := resultWords(verifyString(t, once, lookup)); !slices.Equal(got, []string{"pass"}) {
		t.Errorf("one signature: %v, want pass", got)
	}
	// The second signature fills the slot the first one signed as empty.
	if got := resultWords(verifyString(t, twice, lookup)); !slices.Equal(got, []string{"pass", "fail"}) {
		t.Errorf("two signatures: %v, want pass fail", got)
	}
	// Without the first signature, the second one's h= no longer matches.
	top, _, _ := strings.Cut(twice, "\r\nDKIM-Signature:")
	if got := resultWords(verifyString(t, top+"\r\n"+testMessage, lookup)); !slices.Equal(got, []string{"fail"}) {
		t.Errorf("signed signature removed: %v, want fail", got)
	}
}

// FuzzVerify feeds Verify arbitrary messages: it must never panic, and must
// give one valid result per signature field.
func FuzzVerify(f *testing.F) {
	keys := testKeys(f)
	_, lookup := startDNS(f, txtZone(txtRecords(f, testDomain, keys)))
	f.Add([]byte(signMessage(f, newTestSigner(f, keys), testMessage)))
	for _, name := range []string{"dkimpy/ed25519test2.msg", "dkimpy/test2.message", "rfc8463/signed.eml"} {
		data, err := os.ReadFile(conformanceDir + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; b=;\r\n\r\n"))
	f.Add([]byte("DKIM-Signature:\r\n"))
	f.Add([]byte("dkim-signature: ;;;=;b=;b\n\n"))
	f.Add([]byte(" DKIM-Signature: v=1\r\n\tb=x;\r\n"))
	words := []string{"pass", "fail", "neutral", "policy", "temperror", "permerror"}
	f.Fuzz(func(t *testing.T, msg []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got := Verify(ctx, msg, VerifyOptions{Lookup: lookup})
		fields, _ := splitMessage(msg)
		n := 0
		for _, field := range fields {
			if strings.EqualFold(field.name, "DKIM-Signature") {
				n++
			}
		}
		if len(got) != n {
			t.Errorf("%d results for %d signature fields", len(got), n)
		}
		for _, r := range got {
			if !slices.Contains(words, r.Result) || (r.Result == "pass") != (r.Reason == "") {
				t.Errorf("result %+v", r)
			}
		}
	})
}

// BenchmarkVerify verifies one signature on a 4 KiB message; the key comes
// from the resolver's cache, as for a busy domain.
func BenchmarkVerify(b *testing.B) {
	keys := testKeys(b)
	// The records straight from a map, as from the gateway's DNS cache:
	// the round trip to a DNS server would be most of the time measured.
	records := map[string][]string{}
	for name, r := range txtRecords(b, testDomain, keys) {
		records[strings.TrimSuffix(name, ".")] = []string{r}
	}
	lookup := func(_ context.Context, name string) ([]string, error) { return records[name], nil }
	for _, k := range []struct {
		name string
		key  Key
		keys *KeyCache
	}{{"rsa2048", keys[0], nil}, {"rsa2048cached", keys[0], NewKeyCache()}, {"ed25519", keys[1], nil}} {
		b.Run(k.name, func(b *testing.B) {
			msg := []byte(signMessage(b, newTestSigner(b, []Key{k.key}), string(benchMessage())))
			ctx := context.Background()
			o := VerifyOptions{Lookup: lookup, Keys: k.keys}
			if got := Verify(ctx, msg, o); len(got) != 1 || got[0].Result != "pass" {
				b.Fatalf("%+v", got)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				Verify(ctx, msg, o)
			}
		})
	}
}
