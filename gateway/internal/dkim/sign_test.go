package dkim

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/sluice-mail/sluice/gateway/internal/message"
)

const testDomain = "forward.example"

// testMessage has what signing must cope with: a folded signed field,
// whitespace runs, trailing whitespace and empty lines at the end.
const testMessage = "From: Alice <alice@example.net>\r\n" +
	"To: Bob <bob@example.org>\r\n" +
	"Subject: Lunch on\r\n Thursday?\r\n" +
	"Date: Tue, 02 Jun 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.net>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hi Bob,\r\n" +
	"\r\n" +
	"shall we  meet at noon?\t\r\n" +
	"\r\n" +
	"-- \r\n" +
	"Alice\r\n" +
	"\r\n"

// testKeys returns an RSA-2048 and an Ed25519 key made by openssl (see
// testdata/README.md), so tests need not generate RSA keys.
func testKeys(t testing.TB) []Key {
	t.Helper()
	rsaKey, err := LoadKey("testdata/rsa2048-pkcs8.pem")
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := LoadKey("testdata/ed25519-pkcs8.pem")
	if err != nil {
		t.Fatal(err)
	}
	return []Key{{Selector: "rsa1", Signer: rsaKey}, {Selector: "ed1", Signer: edKey}}
}

// txtRecords maps each key's DNS name to its TXT record.
func txtRecords(t testing.TB, domain string, keys []Key) map[string]string {
	t.Helper()
	records := map[string]string{}
	for _, k := range keys {
		txt, err := TXTRecord(k.Signer)
		if err != nil {
			t.Fatal(err)
		}
		records[k.Selector+"._domainkey."+domain] = txt
	}
	return records
}

func newTestSigner(t testing.TB, keys []Key) *Signer {
	t.Helper()
	s, err := NewSigner(SignerConfig{Domain: testDomain, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signMessage(t testing.TB, s *Signer, msg string) string {
	t.Helper()
	sigs, err := s.Sign([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return string(sigs) + msg
}

// verifyGoMsgauth verifies every signature in msg with go-msgauth, an
// implementation independent of ours, answering key lookups from records.
func verifyGoMsgauth(t *testing.T, msg string, records map[string]string) []*msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if txt, ok := records[name]; ok {
				return []string{txt}, nil
			}
			return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// signatureTags parses the DKIM-Signature fields at the top of msg, in order.
func signatureTags(t *testing.T, msg string) []map[string]string {
	t.Helper()
	fields, _ := splitMessage([]byte(msg))
	var all []map[string]string
	for _, f := range fields {
		if !strings.EqualFold(f.name, "DKIM-Signature") {
			continue
		}
		_, value, _ := strings.Cut(string(f.raw), ":")
		tags := map[string]string{}
		for _, spec := range strings.Split(value, ";") {
			name, v, ok := strings.Cut(spec, "=")
			if !ok {
				continue
			}
			tags[strings.TrimSpace(name)] = strings.Join(strings.Fields(v), "")
		}
		all = append(all, tags)
	}
	return all
}

func TestSignVerifiesWithGoMsgauth(t *testing.T) {
	keys := testKeys(t)
	signed := signMessage(t, newTestSigner(t, keys), testMessage)

	vs := verifyGoMsgauth(t, signed, txtRecords(t, testDomain, keys))
	if len(vs) != 2 {
		t.Fatalf("got %d verifications, want 2", len(vs))
	}
	var want []string
	for _, h := range DefaultHeaders {
		want = append(want, strings.ToLower(h))
	}
	for i, v := range vs {
		if v.Err != nil {
			t.Errorf("signature %d: %v", i, v.Err)
		}
		if v.Domain != testDomain {
			t.Errorf("signature %d: domain %q, want %q", i, v.Domain, testDomain)
		}
		if got := strings.Join(v.HeaderKeys, ":"); got != strings.Join(want, ":") {
			t.Errorf("signature %d signs %s, want %s", i, got, strings.Join(want, ":"))
		}
	}

	tags := signatureTags(t, signed)
	wantAlgo := []struct{ a, s string }{{"rsa-sha256", "rsa1"}, {"ed25519-sha256", "ed1"}}
	for i, w := range wantAlgo {
		if tags[i]["a"] != w.a || tags[i]["s"] != w.s || tags[i]["c"] != "relaxed/relaxed" {
			t.Errorf("signature %d has a=%s s=%s c=%s, want a=%s s=%s c=relaxed/relaxed",
				i, tags[i]["a"], tags[i]["s"], tags[i]["c"], w.a, w.s)
		}
	}
}

func TestSignDetectsChanges(t *testing.T) {
	keys := testKeys(t)
	signed := signMessage(t, newTestSigner(t, keys), testMessage)
	records := txtRecords(t, testDomain, keys)
	sigEnd := strings.Index(signed, "From: Alice")

	// Each change is applied to the signed message below its signatures.
	tests := []struct {
		name   string
		change func(string) string
		pass   bool
	}{
		{"unchanged", func(m string) string { return m }, true},
		{"unsigned field added", func(m string) string {
			return "Received: from mx.example.org by mx.example.com; Tue, 02 Jun 2026 10:00:01 +0000\r\n" + m
		}, true},
		{"whitespace and case relaxed canonicalization ignores", func(m string) string {
			m = strings.Replace(m, "Subject: Lunch on\r\n Thursday?", "SUBJECT :  Lunch \t on Thursday?  ", 1)
			m = strings.Replace(m, "shall we  meet at noon?\t", "shall  we meet   at noon?", 1)
			return m + "\r\n\r\n"
		}, true},
		{"body changed", func(m string) string {
			return strings.Replace(m, "noon", "one", 1)
		}, false},
		{"body line added at the end", func(m string) string { return m + "P.S.\r\n" }, false},
		{"signed field changed", func(m string) string {
			return strings.Replace(m, "Lunch on", "Dinner on", 1)
		}, false},
		{"From added above", func(m string) string {
			return "From: Mallory <mallory@example.com>\r\n" + m
		}, false},
		{"From added below", func(m string) string {
			return strings.Replace(m, "\r\n\r\n", "\r\nFrom: Mallory <mallory@example.com>\r\n\r\n", 1)
		}, false},
		{"second Subject added", func(m string) string {
			return "Subject: Urgent: wire money\r\n" + m
		}, false},
		{"absent signed field added", func(m string) string {
			return "Reply-To: mallory@example.com\r\n" + m
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := signed[:sigEnd] + tt.change(signed[sigEnd:])
			vs := verifyGoMsgauth(t, msg, records)
			if len(vs) != 2 {
				t.Fatalf("got %d verifications, want 2", len(vs))
			}
			for i, v := range vs {
				if tt.pass && v.Err != nil {
					t.Errorf("signature %d fails: %v", i, v.Err)
				}
				if !tt.pass && (v.Err == nil || msgdkim.IsTempFail(v.Err)) {
					t.Errorf("signature %d: got %v, want a verification failure", i, v.Err)
				}
			}
		})
	}
}

func TestSignFieldFormat(t *testing.T) {
	keys := testKeys(t)
	// Whole seconds, and real time: go-msgauth checks x= against its clock.
	now := time.Unix(time.Now().Unix(), 0)
	week := 7 * 24 * time.Hour
	// A long header list must still fold below 78 columns.
	headers := []string{"From", "From"}
	for i := range 30 {
		headers = append(headers, "X-Long-Header-Name-"+strconv.Itoa(i))
	}
	s, err := NewSigner(SignerConfig{
		Domain:  testDomain,
		Keys:    keys,
		Headers: headers,
		Expire:  week,
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(testMessage)
	sigs, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg) != testMessage {
		t.Error("Sign changed the message")
	}

	out := string(sigs)
	if !strings.HasSuffix(out, "\r\n") {
		t.Fatalf("signature fields do not end in CRLF: %q", out)
	}
	fields := 0
	for _, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if len(line) >= 78 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
		if strings.HasPrefix(line, "DKIM-Signature: ") {
			fields++
		} else if !strings.HasPrefix(line, " ") {
			t.Errorf("line is neither a field start nor a continuation: %q", line)
		}
	}
	if fields != 2 {
		t.Errorf("got %d DKIM-Signature fields, want 2", fields)
	}

	tags := signatureTags(t, out+testMessage)
	wantH := strings.ToLower(strings.Join(headers, ":"))
	for i, tg := range tags {
		wantT, wantX := strconv.FormatInt(now.Unix(), 10), strconv.FormatInt(now.Add(week).Unix(), 10)
		if tg["t"] != wantT || tg["x"] != wantX {
			t.Errorf("signature %d: t=%s x=%s, want t=%s x=%s", i, tg["t"], tg["x"], wantT, wantX)
		}
		if tg["h"] != wantH {
			t.Errorf("signature %d: h=%s, want %s", i, tg["h"], wantH)
		}
		if tg["d"] != testDomain || tg["v"] != "1" {
			t.Errorf("signature %d: d=%s v=%s", i, tg["d"], tg["v"])
		}
	}
	// The folding is valid: go-msgauth verifies both signatures.
	vs := verifyGoMsgauth(t, out+testMessage, txtRecords(t, testDomain, keys))
	for i, v := range vs {
		if v.Err != nil {
			t.Errorf("signature %d: %v", i, v.Err)
		}
	}
}

func TestSignUsesNow(t *testing.T) {
	s := fixedClockSigner(t)
	sigs, err := s.Sign([]byte(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	for i, tg := range signatureTags(t, string(sigs)+testMessage) {
		if tg["t"] != "1000000000" {
			t.Errorf("signature %d: t=%s, want the configured clock's 1000000000", i, tg["t"])
		}
		if x, ok := tg["x"]; ok {
			t.Errorf("signature %d: x=%s without Expire", i, x)
		}
	}
}

func TestSignBareLF(t *testing.T) {
	// Bare LF line ends are signed as CRLF, which is what they become on the
	// SMTP wire.
	keys := testKeys(t)
	lf := strings.ReplaceAll(testMessage, "\r\n", "\n")
	sigs, err := newTestSigner(t, keys).Sign([]byte(lf))
	if err != nil {
		t.Fatal(err)
	}
	wire := string(sigs) + testMessage
	for i, v := range verifyGoMsgauth(t, wire, txtRecords(t, testDomain, keys)) {
		if v.Err != nil {
			t.Errorf("signature %d: %v", i, v.Err)
		}
	}
}

func TestSignEmptyBody(t *testing.T) {
	keys := testKeys(t)
	for _, msg := range []string{
		"From: a@example.net\r\nSubject: nothing\r\n\r\n",
		"From: a@example.net\r\nSubject: no separator\r\n",
		"From: a@example.net\r\nSubject: blank lines\r\n\r\n\r\n \r\n\r\n",
	} {
		signed := signMessage(t, newTestSigner(t, keys), msg)
		if !strings.Contains(signed, "\r\n\r\n") {
			// go-msgauth cannot read a message without the empty line;
			// adding it leaves the (empty) canonical body unchanged.
			signed += "\r\n"
		}
		for i, v := range verifyGoMsgauth(t, signed, txtRecords(t, testDomain, keys)) {
			if v.Err != nil {
				t.Errorf("%q: signature %d: %v", msg, i, v.Err)
			}
		}
	}
}

func TestNewSignerRejects(t *testing.T) {
	keys := testKeys(t)
	small := loadPKCS1(t, "testdata/rsa512-pkcs1.pem")
	tests := []struct {
		name string
		c    SignerConfig
		want string
	}{
		{"no domain", SignerConfig{Keys: keys}, "not a DNS name"},
		{"domain with space", SignerConfig{Domain: "a b.example", Keys: keys}, "not a DNS name"},
		{"no keys", SignerConfig{Domain: testDomain}, "no signing keys"},
		{"no selector", SignerConfig{Domain: testDomain, Keys: []Key{{Signer: keys[0].Signer}}}, "selector"},
		{"selector with semicolon", SignerConfig{Domain: testDomain, Keys: []Key{{Selector: "a;b", Signer: keys[0].Signer}}}, "not a DNS label"},
		{"nil key", SignerConfig{Domain: testDomain, Keys: []Key{{Selector: "s"}}}, "has no key"},
		{"small RSA key", SignerConfig{Domain: testDomain, Keys: []Key{{Selector: "s", Signer: small}}}, "512 bits"},
		{"no From", SignerConfig{Domain: testDomain, Keys: keys, Headers: []string{"To", "Subject"}}, "must include From"},
		{"bad header name", SignerConfig{Domain: testDomain, Keys: keys, Headers: []string{"From", "Sub ject"}}, "not a header field name"},
		{"negative expiry", SignerConfig{Domain: testDomain, Keys: keys, Expire: -time.Hour}, "expiry"},
		{"sub-second expiry", SignerConfig{Domain: testDomain, Keys: keys, Expire: time.Millisecond}, "expiry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSigner(tt.c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// loadPKCS1 parses an RSA key without LoadKey's size check.
func loadPKCS1(t *testing.T, path string) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignerKeyError(t *testing.T) {
	keys := testKeys(t)
	keys[1].Signer = failingSigner{keys[1].Signer}
	_, err := newTestSigner(t, keys).Sign([]byte(testMessage))
	if err == nil || !strings.Contains(err.Error(), `selector "ed1"`) || !strings.Contains(err.Error(), "token removed") {
		t.Errorf("got %v, want an error naming selector ed1 and the cause", err)
	}
}

// failingSigner stands for a hardware key that went away: a real
// crypto.Signer whose Sign fails.
type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("token removed")
}

func TestSignConcurrent(t *testing.T) {
	// One Signer serves every session; run with -race.
	keys := testKeys(t)
	s := newTestSigner(t, keys)
	records := txtRecords(t, testDomain, keys)
	done := make(chan string)
	for i := range 4 {
		go func() {
			msg := strings.Replace(testMessage, "noon", "noon, table "+strconv.Itoa(i), 1)
			sigs, err := s.Sign([]byte(msg))
			if err != nil {
				done <- ""
				return
			}
			done <- string(sigs) + msg
		}()
	}
	for range 4 {
		signed := <-done
		if signed == "" {
			t.Fatal("Sign failed")
		}
		for i, v := range verifyGoMsgauth(t, signed, records) {
			if v.Err != nil {
				t.Errorf("signature %d: %v", i, v.Err)
			}
		}
	}
}

// TestSignPartsIsSign: a message signed in two pieces, header and body,
// gets exactly the signatures the joined message gets, whether or not
// the header piece ends with the empty line.
func TestSignPartsIsSign(t *testing.T) {
	s := fixedClockSigner(t)
	whole, err := s.Sign([]byte(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	header, body, _ := strings.Cut(testMessage, "\r\n\r\n")
	header += "\r\n"
	first, rest, _ := strings.Cut(header, "\r\n")
	// The header parsed, and the same fields as views of other headers:
	// one with fields removed, and one with the top field put on.
	for name, h := range map[string]*message.Header{
		"parsed":  message.ParseHeader([]byte(header)),
		"without": message.ParseHeader([]byte("X-Drop: 1\r\n" + first + "\r\nX-Drop: 2\r\n" + rest)).Without("x-drop"),
		"prepend": message.ParseHeader([]byte(rest)).Prepend([]byte(first + "\r\n")),
	} {
		if got := string(h.Bytes()); got != header {
			t.Fatalf("%s: header %q, want %q", name, got, header)
		}
		parts, err := s.SignParts(h, NewBody([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		if string(parts) != string(whole) {
			t.Errorf("SignParts(%s header, body):\n%s\nSign(whole message):\n%s", name, parts, whole)
		}
	}
	// And the body matters: the same header with another body signs differently.
	other, err := s.SignParts(message.ParseHeader([]byte(header)), NewBody([]byte("another body\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	if string(other) == string(whole) {
		t.Error("SignParts ignored the body")
	}
}

// fixedClockSigner signs for testDomain with testKeys at the time
// 1000000000.
func fixedClockSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := NewSigner(SignerConfig{
		Domain: testDomain,
		Keys:   testKeys(t),
		Now:    func() time.Time { return time.Unix(1000000000, 0) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
