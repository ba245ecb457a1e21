package dkim

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
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

// BenchmarkBodyHash hashes the relaxed canonical body: of benchMessage,
// whose double spaces need collapsing, and of 64 KiB of text lines or
// base64 that need nothing done, as most bodies.
func BenchmarkBodyHash(b *testing.B) {
	_, collapsed := splitMessage(benchMessage())
	for _, bench := range []struct {
		name string
		body []byte
	}{
		{"collapsed4KiB", collapsed},
		{"text64KiB", []byte(strings.Repeat("The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n", 900))},
		{"base64_64KiB", []byte(strings.Repeat("VGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZywgYWdhaW4gYW5k\r\n", 900))},
	} {
		b.Run(bench.name, func(b *testing.B) {
			b.SetBytes(int64(len(bench.body)))
			b.ReportAllocs()
			for b.Loop() {
				bodyHash(NewBody(bench.body))
			}
		})
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

// BenchmarkRelaxedHeader canonicalizes a folded signature field, the
// longest kind a message carries (and the kind verifying and sealing
// canonicalize most), and a short unfolded one.
func BenchmarkRelaxedHeader(b *testing.B) {
	for _, bench := range []struct{ name, raw string }{
		{"folded", "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\r\n" +
			"\ts=sel; t=1795659051; h=from:from:to:to:subject:subject:date:date:\r\n" +
			"\tmessage-id:message-id:mime-version:mime-version:content-type:content-type;\r\n" +
			"\tbh=Ck5SoRNWUpSR4X0COv7R5ub2pUTtl6xz4dTFz++ji4M=;\r\n" +
			"\tb=3pURVwecldgrigQPKLHbEPpi8kerp4sg6eMETM9iPJ163YEDwTvxSfDFvoBmjGlR0hXvt\r\n" +
			"\t zGXDPE+ExzmB0I0IOONMq+FY04h4ePviRmyVO6I1KKzc3rO6c5sqmzGs2Kr/yMBftZPO0Xk\r\n" +
			"\t RHyTFL1iPSCvS6uM+iKiaHSoIyQt5NHjNBPMXOTm5BLH6cdtSxM3uLmoza3bfIHKHleHQ9c\r\n" +
			"\t gq+g0/tsukO/PXJGKnQE30mSUopoTqdvRlWZnkTUDi0ekX1PWJE1HJT+C3RGJrKzsL9J9Zf\r\n" +
			"\t irbifW8+WZvmBGuouT6hQJtIYB4TzhnScynok1g9jl9wZUKY1EpR7Ad7vtvg==\r\n"},
		{"plain", "Subject: Re: the quarterly figures for the north-west region\r\n"},
	} {
		b.Run(bench.name, func(b *testing.B) {
			raw := []byte(bench.raw)
			dst := make([]byte, 0, 1024)
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				appendRelaxedHeader(dst[:0], raw)
			}
		})
	}
}

// BenchmarkRSASignAllCores is one RSA-2048 PKCS #1 v1.5 signature of a
// SHA-256 digest, the operation DKIM and ARC signing spend their time in,
// run on every core at once: ns/op is wall time per signature for the
// whole machine. bench/load.sh uses it for the bound that three such
// signatures per message (DKIM, ARC-Message-Signature, ARC-Seal) set on
// the full profile's rate, measured in the same run on the same cores.
func BenchmarkRSASignAllCores(b *testing.B) {
	key := testKeys(b)[0].Signer
	digest := sha256.Sum256(benchMessage())
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
