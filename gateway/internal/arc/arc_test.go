package arc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

const testMessage = "From: Alice <alice@example.org>\r\n" +
	"To: info@custom.example\r\n" +
	"Subject: Lunch\r\n" +
	"Date: Thu, 14 Jan 2025 15:00:01 +0000\r\n" +
	"Message-ID: <lunch@example.org>\r\n" +
	"\r\n" +
	"Hi  Bob,\r\n\r\nnoon? \r\n\r\n"

// hop is one ARC sealer: a domain, a selector and a key.
type hop struct {
	domain, selector string
	key              crypto.Signer
}

var (
	rsaPEM = sync.OnceValue(func() []byte { return mustKey("rsa") })
	edPEM  = sync.OnceValue(func() []byte { return mustKey("ed25519") })
	rsaKey = sync.OnceValue(func() crypto.Signer { return mustLoad(rsaPEM()) })
	edKey  = sync.OnceValue(func() crypto.Signer { return mustLoad(edPEM()) })
)

// mustKey generates a key and returns its PEM.
func mustKey(algorithm string) []byte {
	k, err := dkim.GenerateKey(algorithm, 0)
	if err != nil {
		panic(err)
	}
	pem, err := dkim.MarshalKey(k)
	if err != nil {
		panic(err)
	}
	return pem
}

// mustLoad loads a key as the gateway loads its keys, so that a build with
// the tag openssl seals with OpenSSL.
func mustLoad(pem []byte) crypto.Signer {
	k, err := dkim.ParseKey(pem)
	if err != nil {
		panic(err)
	}
	return k
}

func testHops() []hop {
	return []hop{
		{"forwarder.example", "arc2025", rsaKey()},
		{"list.example", "ed", edKey()},
		{"gateway.example", "rsa", rsaKey()},
	}
}

// keyZone is the zone-file text that publishes each hop's key.
func keyZone(t testing.TB, hops []hop) string {
	t.Helper()
	var b strings.Builder
	for _, h := range hops {
		txt, err := dkim.TXTRecord(h.key)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s._domainkey.%s. 300 IN TXT", h.selector, h.domain)
		for len(txt) > 0 { // TXT strings hold at most 255 bytes
			n := min(len(txt), 255)
			fmt.Fprintf(&b, " %q", txt[:n])
			txt = txt[n:]
		}
		b.WriteString("\n")
	}
	return b.String()
}

// startDNS publishes the hops' keys on a real DNS server on loopback and
// returns a lookup through the resolver the gateway uses.
func startDNS(t testing.TB, hops []hop) (*dnstest.Server, TXTLookup) {
	t.Helper()
	s := dnstest.Start(t, keyZone(t, hops))
	r, err := resolver.New(resolver.Config{Nameservers: []string{s.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	return s, r.LookupTXT
}

// mapLookup serves the hops' keys from memory, for fuzzing and benchmarks.
func mapLookup(t testing.TB, hops []hop) TXTLookup {
	t.Helper()
	return suiteLookup(keyRecords(t, hops))
}

// keyRecords maps each hop's key name ("selector._domainkey.domain") to
// its TXT record.
func keyRecords(t testing.TB, hops []hop) map[string]string {
	t.Helper()
	records := map[string]string{}
	for _, h := range hops {
		txt, err := dkim.TXTRecord(h.key)
		if err != nil {
			t.Fatal(err)
		}
		records[h.selector+"._domainkey."+h.domain] = txt
	}
	return records
}

// verify is Verify, checked against VerifyHeader: the gateway verifies
// the header it parsed once, which must give the same result.
func verify(msg []byte, lookup TXTLookup) Result {
	r := Verify(context.Background(), msg, VerifyOptions{Lookup: lookup})
	if message.BareLineEndings(msg) > 0 {
		return r // the gateway has none
	}
	header, body := message.Split(msg)
	if parsed := VerifyHeader(context.Background(), message.ParseHeader(header), dkim.NewBody(body), VerifyOptions{Lookup: lookup}); !reflect.DeepEqual(parsed, r) {
		panic(fmt.Sprintf("VerifyHeader = %+v, Verify = %+v", parsed, r))
	}
	return r
}

// sealBy verifies msg, has h seal it and returns the sealed message.
func sealBy(t testing.TB, msg []byte, h hop, lookup TXTLookup) []byte {
	t.Helper()
	chain := verify(msg, lookup)
	set, err := Seal(msg, "mx."+h.domain, "spf=pass smtp.mailfrom=alice@example.org; arc="+chain.CV, chain,
		SealConfig{Domain: h.domain, Selector: h.selector, Key: h.key})
	if err != nil {
		t.Fatal(err)
	}
	return append(set, msg...)
}

func wantResult(t *testing.T, got Result, cv string, instances, oldestPass int) {
	t.Helper()
	if got.CV != cv || got.Instances != instances || got.OldestPass != oldestPass {
		t.Errorf("got cv=%s instances=%d oldest-pass=%d (%s), want cv=%s instances=%d oldest-pass=%d",
			got.CV, got.Instances, got.OldestPass, got.Reason, cv, instances, oldestPass)
	}
}

// TestSealFirst seals a message without a chain: instance 1, cv=none, and
// the result verifies as a one-set chain with the sealer named.
func TestSealFirst(t *testing.T) {
	hops := testHops()
	_, lookup := startDNS(t, hops)
	msg := []byte(testMessage)
	wantResult(t, verify(msg, lookup), CVNone, 0, 0)

	sealed := sealBy(t, msg, hops[0], lookup)
	fields, _ := dkim.SplitMessage(sealed)
	for i, name := range []string{asName, amsName, aarName} {
		if fields[i].Name() != name {
			t.Fatalf("field %d is %s, want %s:\n%s", i, fields[i].Name(), name, sealed)
		}
	}
	as, _ := parseTags(fieldValue(fields[0].Raw()))
	if as["i"] != "1" || as["cv"] != "none" || as["a"] != "rsa-sha256" || as["d"] != hops[0].domain {
		t.Errorf("ARC-Seal tags %v, want i=1 cv=none a=rsa-sha256 d=%s", as, hops[0].domain)
	}
	aar := strings.Join(strings.Fields(fieldValue(fields[2].Raw())), " ")
	if want := "i=1; mx.forwarder.example; spf=pass smtp.mailfrom=alice@example.org; arc=none"; aar != want {
		t.Errorf("AAR %q, want %q", aar, want)
	}
	got := verify(sealed, lookup)
	wantResult(t, got, CVPass, 1, 1)
	if want := []Sealer{{1, hops[0].domain, hops[0].selector}}; fmt.Sprint(got.Sealers) != fmt.Sprint(want) {
		t.Errorf("sealers %v, want %v", got.Sealers, want)
	}
}

// TestSealOnChain extends a valid chain hop by hop, RSA and Ed25519 mixed:
// each seal is instance n+1 with cv=pass, and the chain keeps passing.
func TestSealOnChain(t *testing.T) {
	hops := testHops()
	_, lookup := startDNS(t, hops)
	msg := []byte(testMessage)
	for n, h := range hops {
		msg = sealBy(t, msg, h, lookup)
		got := verify(msg, lookup)
		wantResult(t, got, CVPass, n+1, 1)
		if s := got.Sealers[n]; s.Instance != n+1 || s.Domain != h.domain || s.Selector != h.selector {
			t.Errorf("sealer %d is %+v, want %s/%s", n+1, s, h.domain, h.selector)
		}
	}
	fields, _ := dkim.SplitMessage(msg)
	as, _ := parseTags(fieldValue(fields[0].Raw()))
	if as["i"] != "3" || as["cv"] != "pass" {
		t.Errorf("newest ARC-Seal has i=%s cv=%s, want i=3 cv=pass", as["i"], as["cv"])
	}
}

// TestEd25519 seals with an Ed25519 key: a=ed25519-sha256 in both
// signatures, and the chain verifies against the k=ed25519 record.
func TestEd25519(t *testing.T) {
	hops := testHops()[1:2]
	_, lookup := startDNS(t, hops)
	sealed := sealBy(t, []byte(testMessage), hops[0], lookup)
	fields, _ := dkim.SplitMessage(sealed)
	for _, f := range fields[:2] {
		tg, _ := parseTags(fieldValue(f.Raw()))
		if tg["a"] != "ed25519-sha256" {
			t.Errorf("%s has a=%s, want ed25519-sha256", f.Name(), tg["a"])
		}
	}
	wantResult(t, verify(sealed, lookup), CVPass, 1, 1)
	// The same seal checked against an RSA key under the name fails.
	other := []hop{{hops[0].domain, hops[0].selector, rsaKey()}}
	if got := verify(sealed, mapLookup(t, other)); got.CV != CVFail || !strings.Contains(got.Reason, "k=rsa") {
		t.Errorf("against an RSA record: cv=%s (%s), want fail naming k=rsa", got.CV, got.Reason)
	}
}

// TestChangesAfterSealing: what the AMS covers cannot change unnoticed.
func TestChangesAfterSealing(t *testing.T) {
	hops := testHops()
	_, lookup := startDNS(t, hops)
	sealed := string(sealBy(t, []byte(testMessage), hops[0], lookup))
	for _, tc := range []struct {
		name, msg, reason string
	}{
		{"body", strings.Replace(sealed, "noon", "one", 1), "body hash"},
		{"subject", strings.Replace(sealed, "Subject: Lunch", "Subject: Dinner", 1), "does not verify"},
		// From is oversigned: a second one added anywhere breaks the AMS.
		{"second From", strings.Replace(sealed, "To: ", "From: mallory@example.com\r\nTo: ", 1), "does not verify"},
		{"AAR", strings.Replace(sealed, "spf=pass", "spf=fail", 1), "ARC-Seal i=1: signature does not verify"},
		{"seal cv", strings.Replace(sealed, "cv=none", "cv=pass", 1), "cv=pass, want none"},
	} {
		got := verify([]byte(tc.msg), lookup)
		if got.CV != CVFail || !strings.Contains(got.Reason, tc.reason) || got.OldestPass != 0 {
			t.Errorf("%s changed: cv=%s oldest-pass=%d (%s), want fail saying %q", tc.name, got.CV, got.OldestPass, got.Reason, tc.reason)
		}
	}
	// Unsigned fields may change: Received, a new X- field.
	added := "Received: from a by b; Thu, 14 Jan 2025 15:00:02 +0000\r\nX-Spam: no\r\n" + sealed
	wantResult(t, verify([]byte(added), lookup), CVPass, 1, 1)
}

// TestOldestPass: a list changes the message after verifying it and seals
// on the passing chain; the first AMS no longer validates, the chain still
// passes, and oldest-pass shows where the message is intact from.
func TestOldestPass(t *testing.T) {
	hops := testHops()
	_, lookup := startDNS(t, hops)
	msg := sealBy(t, []byte(testMessage), hops[0], lookup)
	chain := verify(msg, lookup)
	changed := bytes.Replace(msg, []byte("Subject: Lunch"), []byte("Subject: [list] Lunch"), 1)
	set, err := Seal(changed, "list.example", "arc=pass", chain, SealConfig{Domain: hops[1].domain, Selector: hops[1].selector, Key: hops[1].key})
	if err != nil {
		t.Fatal(err)
	}
	wantResult(t, verify(append(set, changed...), lookup), CVPass, 2, 2)
}

// TestSealFailedChain: on a broken chain the new set says cv=fail and its
// seal covers only itself (RFC 8617 §5.1.2); on top of that, nothing more
// is added (§5.1 step 2).
func TestSealFailedChain(t *testing.T) {
	hops := testHops()
	_, lookup := startDNS(t, hops)
	msg := sealBy(t, []byte(testMessage), hops[0], lookup)
	broken := bytes.Replace(msg, []byte("noon"), []byte("one"), 1)
	chain := verify(broken, lookup)
	wantResult(t, chain, CVFail, 1, 0)

	sealed := sealBy(t, broken, hops[1], lookup)
	fields, body := dkim.SplitMessage(sealed)
	c := parseChain(fields)
	if c.sets == nil && c.err == nil {
		t.Fatal("no chain found in the sealed message")
	}
	as, _ := parseTags(fieldValue(fields[0].Raw()))
	if as["i"] != "2" || as["cv"] != "fail" {
		t.Fatalf("new ARC-Seal has i=%s cv=%s, want i=2 cv=fail", as["i"], as["cv"])
	}
	// The new seal validates over its own set alone.
	ams, _ := parseTags(fieldValue(fields[1].Raw()))
	own := arcSet{aar: fields[2], ams: fields[1], as: fields[0], amsTags: ams, asTags: as}
	v := verifier{ctx: context.Background(), keys: keys{lookup: lookup}, now: time.Now, fields: fields, body: dkim.NewBody(body)}
	if err := v.verifyAS([]arcSet{own}); err != nil {
		t.Errorf("the cv=fail seal does not validate over its own set: %v", err)
	}
	if err := v.verifyAMS(own.ams, own.amsTags); err != nil {
		t.Errorf("the AMS of the cv=fail set does not validate: %v", err)
	}
	got := verify(sealed, lookup)
	if got.CV != CVFail || !strings.Contains(got.Reason, "cv=fail") {
		t.Errorf("verify after a cv=fail seal: cv=%s (%s), want fail because of cv=fail", got.CV, got.Reason)
	}
	set, err := Seal(sealed, "mx.example", "arc=fail", got, SealConfig{Domain: hops[2].domain, Selector: hops[2].selector, Key: hops[2].key})
	if err != nil || set != nil {
		t.Errorf("sealing a chain that says cv=fail: %q, %v; want nothing and no error", set, err)
	}
}

// TestFiftySets: a chain may have 50 sets and no more.
func TestFiftySets(t *testing.T) {
	hops := testHops()[1:2] // Ed25519: fast
	lookup := mapLookup(t, hops)
	msg := []byte(testMessage)
	for range 50 {
		msg = sealBy(t, msg, hops[0], lookup)
	}
	got := verify(msg, lookup)
	wantResult(t, got, CVPass, 50, 1)
	set, err := Seal(msg, "mx.example", "arc=pass", got, SealConfig{Domain: hops[0].domain, Selector: hops[0].selector, Key: hops[0].key})
	if err != nil || set != nil {
		t.Errorf("sealing a 51st set: %q, %v; want nothing and no error", set, err)
	}
	// A 51st set made anyway (by renumbering a copy of the 50th) fails.
	fields, _ := dkim.SplitMessage(msg)
	var extra []byte
	for _, f := range fields[:3] {
		extra = append(extra, bytes.Replace(f.Raw(), []byte("i=50;"), []byte("i=51;"), 1)...)
	}
	if got := verify(append(extra, msg...), lookup); got.CV != CVFail || !strings.Contains(got.Reason, "more than 50") {
		t.Errorf("51 sets: cv=%s (%s), want fail: more than 50", got.CV, got.Reason)
	}
}

// TestFolding: every line Seal writes is under 78 columns, also with the
// long default h= list and long results, and the fields still verify.
func TestFolding(t *testing.T) {
	hops := testHops()
	lookup := mapLookup(t, hops)
	msg := []byte("DKIM-Signature: v=1; d=example.org; b=abc\r\n" + testMessage)
	chain := verify(msg, lookup)
	results := strings.Repeat("dkim=pass header.d=example.org header.s=selector2025; ", 8) + "dmarc=pass"
	for _, h := range hops[:2] {
		set, err := Seal(msg, "mx.gateway.example", results, chain, SealConfig{Domain: h.domain, Selector: h.selector, Key: h.key})
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.SplitAfter(string(set), "\r\n") {
			if len(line) > 78 {
				t.Errorf("line of %d characters: %q", len(line), line)
			}
		}
		fields, _ := dkim.SplitMessage(set)
		ams, _ := parseTags(fieldValue(fields[1].Raw()))
		names := strings.Split(removeFWS(ams["h"]), ":")
		if count(names, "from") != 2 || count(names, "dkim-signature") != 1 || count(names, "arc-authentication-results") != 0 {
			t.Errorf("default h= %v: want from twice, dkim-signature once, no ARC fields", names)
		}
		wantResult(t, verify(append(set, msg...), lookup), CVPass, 1, 1)
	}
}

// TestSignedNamesASCII: a field whose name only Unicode folds to
// DKIM-Signature (a long s) is no DKIM-Signature, so the default h= lists
// the one real signature once, and a hop after us that signs the message
// does not break the seal.
func TestSignedNamesASCII(t *testing.T) {
	hops := testHops()
	lookup := mapLookup(t, hops)
	msg := []byte("DKIM-Signature: v=1; d=example.org; b=abc\r\nDKIM-\u017fignature: x\r\n" + testMessage)
	set, err := Seal(msg, "mx.gateway.example", "dkim=none", verify(msg, lookup), SealConfig{Domain: hops[0].domain, Selector: hops[0].selector, Key: hops[0].key})
	if err != nil {
		t.Fatal(err)
	}
	fields, _ := dkim.SplitMessage(set)
	ams, _ := parseTags(fieldValue(fields[1].Raw()))
	if names := strings.Split(removeFWS(ams["h"]), ":"); count(names, "dkim-signature") != 1 {
		t.Errorf("h= %v: want dkim-signature once", names)
	}
	next := append([]byte("DKIM-Signature: v=1; d=next.example; b=def\r\n"), append(set, msg...)...)
	wantResult(t, verify(next, lookup), CVPass, 1, 1)
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// TestSealErrors: Seal refuses what would make a wrong or broken set.
func TestSealErrors(t *testing.T) {
	hops := testHops()
	lookup := mapLookup(t, hops)
	msg := []byte(testMessage)
	sealed := sealBy(t, msg, hops[0], lookup)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := SealConfig{Domain: "gw.example", Selector: "s1", Key: edKey()}
	none := Result{CV: CVNone}
	for _, tc := range []struct {
		name       string
		msg        []byte
		id, result string
		chain      Result
		change     func(*SealConfig)
		err        string
	}{
		{"bad domain", msg, "mx", "", none, func(c *SealConfig) { c.Domain = "a b" }, "domain"},
		{"bad selector", msg, "mx", "", none, func(c *SealConfig) { c.Selector = "" }, "selector"},
		{"no key", msg, "mx", "", none, func(c *SealConfig) { c.Key = nil }, "no sealing key"},
		{"ECDSA key", msg, "mx", "", none, func(c *SealConfig) { c.Key = ec }, "ECDSA"},
		{"signs ARC-Seal", msg, "mx", "", none, func(c *SealConfig) { c.Headers = []string{"From", "ARC-Seal"} }, "arc-seal"},
		{"signs A-R", msg, "mx", "", none, func(c *SealConfig) { c.Headers = []string{"Authentication-Results"} }, "authentication-results"},
		{"bad field name", msg, "mx", "", none, func(c *SealConfig) { c.Headers = []string{"From:"} }, "not a header field name"},
		{"empty authserv-id", msg, "", "", none, nil, "authserv-id"},
		{"authserv-id with space", msg, "a b", "", none, nil, "authserv-id"},
		{"results with CRLF", msg, "mx", "spf=pass\r\nX: y", none, nil, "line break"},
		{"none but sealed", sealed, "mx", "", none, nil, "says none"},
		{"pass but other chain", sealed, "mx", "", Result{CV: CVPass, Instances: 2}, nil, "not the one verified"},
		{"unknown cv", msg, "mx", "", Result{CV: "maybe"}, nil, "not none, pass or fail"},
	} {
		c := good
		if tc.change != nil {
			tc.change(&c)
		}
		set, err := Seal(tc.msg, tc.id, tc.result, tc.chain, c)
		if err == nil || !strings.Contains(err.Error(), tc.err) || set != nil {
			t.Errorf("%s: got %v, want an error saying %q", tc.name, err, tc.err)
		}
	}
	// Empty results are written as "none" (RFC 8601 no-result).
	set, err := Seal(msg, "mx", " ", none, good)
	if err != nil || !bytes.Contains(set, []byte("i=1; mx; none\r\n")) {
		t.Errorf("empty results: %q, %v; want an AAR ending in \"mx; none\"", set, err)
	}
}

// TestDNSFailure: a key that cannot be fetched fails the chain (RFC 8617
// §5.2.1), with the name in the reason.
func TestDNSFailure(t *testing.T) {
	hops := testHops()
	s, lookup := startDNS(t, hops)
	sealed := sealBy(t, []byte(testMessage), hops[0], lookup)
	name := hops[0].selector + "._domainkey." + hops[0].domain
	s.Fail(name+".", dns.RcodeServerFailure)
	r, err := resolver.New(resolver.Config{Nameservers: []string{s.Addr()}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := verify(sealed, r.LookupTXT)
	if got.CV != CVFail || !strings.Contains(got.Reason, name) || !strings.Contains(got.Reason, "SERVFAIL") {
		t.Errorf("cv=%s (%s), want fail naming %s and SERVFAIL", got.CV, got.Reason, name)
	}
	if got := verify(sealed, nil); got.CV != CVFail {
		t.Errorf("no lookup: cv=%s, want fail", got.CV)
	}
}

// TestCheckTimes: x= is honoured with the clock Verify is given.
func TestCheckTimes(t *testing.T) {
	at := func(unix int64) *verifier {
		return &verifier{now: func() time.Time { return time.Unix(unix, 0) }}
	}
	for _, tc := range []struct {
		t    tags
		now  int64
		fail string
	}{
		{tags{"t": "100", "x": "200"}, 150, ""},
		{tags{"t": "100", "x": "200"}, 200, ""},
		{tags{"t": "100", "x": "200"}, 201, "expired"},
		{tags{"t": "300", "x": "200"}, 150, "before t="},
		{tags{"x": "2o0"}, 150, "not a time"},
		{tags{"t": "1234567890123"}, 150, "not a time"},
		{tags{}, 150, ""},
	} {
		err := at(tc.now).checkTimes(tc.t)
		if (tc.fail == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.fail) {
			t.Errorf("%v at %d: %v, want %q", tc.t, tc.now, err, tc.fail)
		}
	}
}

func TestParseTags(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // fmt of the map, or the error text
	}{
		{" a = 1 ;b=x y ; ", "map[a:1 b:x y]"},
		{"a=1;;b=2", "empty tag"},
		{"a=1; =2", "invalid tag name"},
		{"a=1; 9a=2", "invalid tag name"},
		{"a=1; a=2", "appears twice"},
		{"a=1; b", "has no '='"},
		{"v=\r\n\t1", "map[v:1]"},
	} {
		got, err := parseTags(tc.in)
		s := fmt.Sprint(got)
		if err != nil {
			s = err.Error()
		}
		if !strings.Contains(s, tc.want) {
			t.Errorf("parseTags(%q) = %s, want %s", tc.in, s, tc.want)
		}
	}
}

// TestWithoutSignature: b= loses its value and nothing else, bh= stays.
func TestWithoutSignature(t *testing.T) {
	for in, want := range map[string]string{
		"X: a=1; b=abc\r\n def; bh=xyz\r\n": "X: a=1; b=; bh=xyz\r\n",
		"X: bh=x; b = a b c \r\n":           "X: bh=x; b =",
		"X: b=1;b=2":                        "X: b=;b=",
	} {
		if got := string(withoutSignature([]byte(in))); got != want {
			t.Errorf("withoutSignature(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSealPartsIsSeal: a message sealed in two pieces, header and body,
// gets exactly the ARC set the joined message gets.
func TestSealPartsIsSeal(t *testing.T) {
	hops := testHops()
	_, lookup := startDNS(t, hops)
	msg := []byte(testMessage)
	chain := verify(msg, lookup)
	c := SealConfig{Domain: hops[0].domain, Selector: hops[0].selector, Key: hops[0].key,
		Now: func() time.Time { return time.Unix(1700000000, 0) }}
	const results = "spf=pass smtp.mailfrom=alice@example.org"
	whole, err := Seal(msg, "mx.forwarder.example", results, chain, c)
	if err != nil {
		t.Fatal(err)
	}
	header, body, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	parts, err := SealParts(message.ParseHeader(append(bytes.Clone(header), "\r\n"...)), dkim.NewBody(body), "mx.forwarder.example", results, chain, c)
	if err != nil {
		t.Fatal(err)
	}
	if string(parts) != string(whole) {
		t.Errorf("SealParts:\n%s\nSeal of the whole message:\n%s", parts, whole)
	}
	sealed := append(parts, msg...)
	wantResult(t, verify(sealed, lookup), CVPass, 1, 1)
}

// TestForgedHighInstance: a message that claims instance 50 or more
// without the sets before it fails verification, and Seal adds nothing
// and reports no error: what the message says cannot change on a retry.
func TestForgedHighInstance(t *testing.T) {
	hops := testHops()[1:2]
	lookup := mapLookup(t, hops)
	for _, i := range []string{"50", "51"} {
		forged := "ARC-Seal: i=" + i + "; a=rsa-sha256; cv=pass; d=evil.test; s=x; b=AAAA\r\n" +
			"ARC-Message-Signature: i=" + i + "; a=rsa-sha256; d=evil.test; s=x; h=from; bh=AAAA; b=AAAA\r\n" +
			"ARC-Authentication-Results: i=" + i + "; evil.test; spf=pass\r\n" + testMessage
		got := verify([]byte(forged), lookup)
		if got.CV != CVFail {
			t.Errorf("i=%s: cv=%s, want fail", i, got.CV)
		}
		set, err := Seal([]byte(forged), "mx.example", "arc=fail", got, SealConfig{Domain: hops[0].domain, Selector: hops[0].selector, Key: hops[0].key})
		if err != nil || set != nil {
			t.Errorf("i=%s: sealing gave %q, %v; want nothing and no error", i, set, err)
		}
	}
}
