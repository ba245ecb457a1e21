package arc

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
)

// benchMessage returns a 4 KiB message: testMessage's header and a plain
// text body of 72-character lines.
func benchMessage() []byte {
	header, _, _ := strings.Cut(testMessage, "\r\n\r\n")
	msg := header + "\r\n\r\n"
	line := strings.Repeat("lorem  ipsum dolor ", 4)[:70] + "\r\n"
	for len(msg)+len(line) <= 4096 {
		msg += line
	}
	return []byte(msg + strings.Repeat("x", 4096-len(msg)))
}

// benchHops are the two sealers of each benchmark: RSA-2048 or Ed25519.
func benchHops() map[string][]hop {
	return map[string][]hop{
		"rsa2048": {{"a.example", "s1", rsaKey()}, {"b.example", "s2", rsaKey()}},
		"ed25519": {{"a.example", "s1", edKey()}, {"b.example", "s2", edKey()}},
	}
}

// BenchmarkVerify verifies a 2-instance chain on a 4 KiB message: two AMS,
// two AS. Keys come from memory, so this is canonicalization, hashing and
// signature checks, not DNS. The keys are parsed once, into a key cache,
// as the gateway's are.
func BenchmarkVerify(b *testing.B) {
	for _, name := range []string{"rsa2048", "ed25519"} {
		b.Run(name, func(b *testing.B) {
			hops := benchHops()[name]
			lookup := mapLookup(b, hops)
			msg := sealBy(b, sealBy(b, benchMessage(), hops[0], lookup), hops[1], lookup)
			o := VerifyOptions{Lookup: lookup, Keys: dkim.NewKeyCache()}
			if r := Verify(context.Background(), msg, o); r.CV != CVPass || r.Instances != 2 {
				b.Fatalf("chain does not pass: %+v", r)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				Verify(context.Background(), msg, o)
			}
		})
	}
}

// BenchmarkSeal adds the first set to a 4 KiB message.
func BenchmarkSeal(b *testing.B) {
	for _, name := range []string{"rsa2048", "ed25519"} {
		b.Run(name, func(b *testing.B) {
			h := benchHops()[name][0]
			msg := benchMessage()
			c := SealConfig{Domain: h.domain, Selector: h.selector, Key: h.key}
			none := Result{CV: CVNone}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Seal(msg, "mx.example", "spf=pass smtp.mailfrom=a@example.org", none, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
