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
