package dkim

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
)

// The parsers of what a DKIM signer controls: the tag list, the
// DKIM-Signature field, the key record. Seeds (testdata/fuzz/...) are the
// signature fields and key records of the conformance material and of our
// own signer (added at run time). FuzzVerify covers them through Verify; these targets reach
// them directly, many times faster, and check what each promises.

// FuzzParseTags: a tag list that parses gives names that are tag-names,
// values without whitespace at either end or a ';', and the same map when
// written out again.
func FuzzParseTags(f *testing.F) {
	f.Fuzz(func(t *testing.T, list string) {
		tags, err := parseTags(list)
		if err != nil {
			return
		}
		var again strings.Builder
		for _, name := range slices.Sorted(maps.Keys(tags)) {
			v := tags[name]
			if !isTagName(name) || v != trimFWS(v) || strings.Contains(v, ";") {
				t.Fatalf("parseTags(%q): tag %q=%q", list, name, v)
			}
			again.WriteString(name + "=" + v + ";")
		}
		if back, err := parseTags(again.String()); err != nil || !maps.Equal(back, tags) {
			t.Fatalf("parseTags(%q) = %q; written out as %q it parses as %q, %v", list, tags, again.String(), back, err)
		}
	})
}

// FuzzParseSignature: a DKIM-Signature field that parses names a domain
// and selector that are DNS names, an i= within d=, known algorithms and
// canonicalizations, a header list with From in it, and a signature; and
// withoutSignature, which makes the text the signer signed, removes the
// b= value and nothing else.
func FuzzParseSignature(f *testing.F) {
	signed := signMessage(f, newTestSigner(f, testKeys(f)), testMessage)
	fields, _ := splitMessage([]byte(signed))
	for _, field := range fields {
		if field.name == "DKIM-Signature" {
			f.Add(field.raw)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := parseSignature(raw)
		if s == nil {
			t.Fatalf("parseSignature(%q) returned no signature", raw)
		}
		if err != nil {
			return
		}
		if s.keyType != "rsa" && s.keyType != "ed25519" || !isDNSName(s.domain) || !isDNSName(s.selector) ||
			!inDomain(s.identifier, s.domain, false) || len(s.sig) == 0 {
			t.Fatalf("parseSignature(%q) = %+v", raw, s)
		}
		for _, c := range []string{s.headerCanon, s.bodyCanon} {
			if c != "simple" && c != "relaxed" {
				t.Fatalf("parseSignature(%q): canonicalization %q", raw, c)
			}
		}
		if !slices.Contains(s.headers, "from") || slices.ContainsFunc(s.headers, func(h string) bool { return !isFieldName(h) }) {
			t.Fatalf("parseSignature(%q): h= %q", raw, s.headers)
		}

		_, value, _ := bytes.Cut(raw, []byte(":"))
		want, _ := parseTags(string(value))
		want["b"] = ""
		stripped := withoutSignature(raw)
		_, rest, _ := bytes.Cut(stripped, []byte(":"))
		got, err := parseTags(string(rest))
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("withoutSignature(%q) = %q: tags %q, %v; want %q", raw, stripped, got, err, want)
		}
	})
}

// FuzzParseKeyRecord: a key record that parses holds a usable key of its
// type: an RSA key of at least minRSABits (RFC 8301), or 32 bytes of
// Ed25519.
func FuzzParseKeyRecord(f *testing.F) {
	for _, txt := range txtRecords(f, testDomain, testKeys(f)) {
		f.Add(txt)
	}
	f.Fuzz(func(t *testing.T, record string) {
		k, err := parseKeyRecord(record)
		if err != nil {
			return
		}
		switch k.keyType {
		case "rsa":
			if k.rsa == nil || k.rsa.N.BitLen() < minRSABits {
				t.Fatalf("parseKeyRecord(%q): RSA key %v", record, k.rsa)
			}
		case "ed25519":
			if len(k.ed25519) != 32 {
				t.Fatalf("parseKeyRecord(%q): Ed25519 key of %d bytes", record, len(k.ed25519))
			}
		default:
			t.Fatalf("parseKeyRecord(%q): key type %q", record, k.keyType)
		}
	})
}
