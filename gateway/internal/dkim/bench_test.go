package dkim

import (
	"context"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
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

func BenchmarkSign(b *testing.B) {
	keys := testKeys(b)
	msg := benchMessage()
	for _, bench := range []struct {
		name string
		keys []Key
	}{
		{"rsa2048", keys[:1]},
		{"ed25519", keys[1:]},
		{"both", keys},
	} {
		b.Run(bench.name, func(b *testing.B) {
			s := newTestSigner(b, bench.keys)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBodyHash(b *testing.B) {
	_, body := splitMessage(benchMessage())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		bodyHash(body)
	}
}

// BenchmarkVerifySimple is BenchmarkVerify for an Ed25519 signature in
// simple/simple, which Sluice never writes but others do: go-msgauth signs.
func BenchmarkVerifySimple(b *testing.B) {
	k := testKeys(b)[1]
	_, lookup := startDNS(b, txtZone(txtRecords(b, testDomain, []Key{k})))
	var signed strings.Builder
	err := msgdkim.Sign(&signed, strings.NewReader(string(benchMessage())), &msgdkim.SignOptions{
		Domain: testDomain, Selector: k.Selector, Signer: k.Signer,
		HeaderCanonicalization: msgdkim.CanonicalizationSimple,
		BodyCanonicalization:   msgdkim.CanonicalizationSimple,
	})
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte(signed.String())
	ctx := context.Background()
	o := VerifyOptions{Lookup: lookup}
	if got := Verify(ctx, msg, o); len(got) != 1 || got[0].Result != "pass" {
		b.Fatalf("%+v", got)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		Verify(ctx, msg, o)
	}
}
