package address

import (
	"strings"
	"testing"
)

// FuzzDomain feeds Domain arbitrary names. Every part of the gateway
// compares domains in the form Domain returns, so what it accepts must be
// a host name (LDH labels of at most 63 characters, at most 253 in all,
// lower case ASCII), Domain of that must be itself, and the ASCII case of
// the input must not matter: otherwise "OURS.test" and "ours.test" could be
// two domains to the relay protection. Seeds: testdata/fuzz/FuzzDomain.
//
// Domain's fast path for plain ASCII names must agree with IDNA, in value
// and in refusal, on every input.
func FuzzDomain(f *testing.F) {
	f.Fuzz(func(t *testing.T, d string) {
		got, err := Domain(d)
		if d != "" && !strings.HasPrefix(d, ".") && !strings.HasSuffix(d, ".") {
			slow, slowErr := idnaDomain(d)
			if (err == nil) != (slowErr == nil) || got != slow {
				t.Fatalf("Domain(%q) = %q, %v; IDNA says %q, %v", d, got, err, slow, slowErr)
			}
		}
		if err != nil {
			return
		}
		if len(got) > 253 || strings.HasPrefix(got, ".") || strings.HasSuffix(got, ".") {
			t.Fatalf("Domain(%q) = %q: not a host name", d, got)
		}
		for _, label := range strings.Split(got, ".") {
			if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
				strings.ContainsFunc(label, func(r rune) bool { return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-') }) {
				t.Fatalf("Domain(%q) = %q: bad label %q", d, got, label)
			}
		}
		if again, err := Domain(got); err != nil || again != got {
			t.Fatalf("Domain(%q) = %q, but Domain(%q) = %q, %v", d, got, got, again, err)
		}
		for _, smashed := range []string{asciiCase(d, true), asciiCase(d, false)} {
			if other, err := Domain(smashed); err != nil || other != got {
				t.Fatalf("Domain(%q) = %q, but Domain(%q) = %q, %v", d, got, smashed, other, err)
			}
		}
	})
}

// asciiCase changes the case of ASCII letters only.
func asciiCase(s string, upper bool) string {
	return strings.Map(func(r rune) rune {
		switch {
		case upper && 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		case !upper && 'A' <= r && r <= 'Z':
			return r - 'A' + 'a'
		}
		return r
	}, s)
}

// FuzzWithASCIIDomain feeds WithASCIIDomain arbitrary addresses. What it
// returns is what goes to a destination without SMTPUTF8, so it must keep
// the local part byte for byte, leave an ASCII domain as it is, make any
// other domain ASCII, and never change whether the address needs SMTPUTF8.
func FuzzWithASCIIDomain(f *testing.F) {
	for _, s := range []string{"piñata@piñata.example", "info@Bücher.TEST", "a@b.test", "", "@", "x@", "é@xn--bcher-kva.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		got, err := WithASCIIDomain(addr)
		if err != nil {
			return
		}
		i, j := strings.LastIndexByte(addr, '@'), strings.LastIndexByte(got, '@')
		if addr[:i+1] != got[:j+1] {
			t.Fatalf("WithASCIIDomain(%q) = %q: the local part changed", addr, got)
		}
		if IsASCII(addr[i+1:]) && got != addr {
			t.Fatalf("WithASCIIDomain(%q) = %q: an ASCII domain changed", addr, got)
		}
		if !IsASCII(got[j+1:]) || NeedsSMTPUTF8(got) != NeedsSMTPUTF8(addr) {
			t.Fatalf("WithASCIIDomain(%q) = %q: still needs SMTPUTF8 for its domain, or no longer for its local part", addr, got)
		}
	})
}
