package arc

import (
	"crypto/ed25519"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
)

// The parsers of what an ARC sealer controls, reached directly: many times
// faster than through FuzzVerify. Seeds (testdata/fuzz/...) are the ARC
// fields and key records of the ARC test suite.

// FuzzParseTags: a tag list that parses gives tag-names, values without
// whitespace at either end or a ';', the same map when written out again;
// and withoutSignature, which makes the text the sealer signed, removes
// the b= value and nothing else.
func FuzzParseTags(f *testing.F) {
	f.Fuzz(func(t *testing.T, list string) {
		parsed, err := parseTags(list)
		if err != nil {
			return
		}
		var again strings.Builder
		for _, name := range slices.Sorted(maps.Keys(parsed)) {
			v := parsed[name]
			if !isTagName(name) || v != trimFWS(v) || strings.Contains(v, ";") {
				t.Fatalf("parseTags(%q): tag %q=%q", list, name, v)
			}
			again.WriteString(name + "=" + v + ";")
		}
		if back, err := parseTags(again.String()); err != nil || !maps.Equal(back, parsed) {
			t.Fatalf("parseTags(%q) = %q; written out as %q it parses as %q, %v", list, parsed, again.String(), back, err)
		}

		raw := []byte("ARC-Seal:" + list)
		stripped := withoutSignature(raw)
		got, err := parseTags(fieldValue(stripped))
		want := maps.Clone(parsed)
		if _, ok := want["b"]; ok {
			want["b"] = ""
		}
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("withoutSignature(%q) = %q: tags %q, %v; want %q", raw, stripped, got, err, want)
		}
	})
}

// FuzzParseKeyRecord: a key record that parses holds a key of its type:
// RSA of at least minRSABits, or 32 bytes of Ed25519.
func FuzzParseKeyRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, record string) {
		k, err := parseKeyRecord(record)
		if err != nil {
			return
		}
		switch key := k.key.(type) {
		case *dkim.RSAKey:
			if k.kind != "rsa" || key.N.BitLen() < minRSABits {
				t.Fatalf("parseKeyRecord(%q): %s key of %d bits", record, k.kind, key.N.BitLen())
			}
		case ed25519.PublicKey:
			if k.kind != "ed25519" || len(key) != ed25519.PublicKeySize {
				t.Fatalf("parseKeyRecord(%q): %s key of %d bytes", record, k.kind, len(key))
			}
		default:
			t.Fatalf("parseKeyRecord(%q): %s key %T", record, k.kind, k.key)
		}
	})
}
