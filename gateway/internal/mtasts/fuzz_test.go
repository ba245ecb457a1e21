package mtasts

import (
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds policy files as a destination's web server may serve
// them: anything. Parse must not panic, and what it accepts must be a
// policy it would publish the same way: a known mode, at most MaxAge,
// patterns Matches can use, and String read back as the same policy.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
		"version: STSv1\nmode: testing\nmx: mail.example.com\nmax_age: 86400\nfuture: x\n",
		"version: STSv1\nmode: none\nmax_age: 0\n",
		"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
		"version:STSv1\nmode:enforce\nmx:A.EXAMPLE.\nmax_age:99999999\n",
		"mode: enforce\nversion: STSv1\nversion: STSv2\nmx: a\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a\rb.example\nmax_age: 1\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse(text)
		if err != nil {
			return
		}
		switch p.Mode {
		case Enforce, Testing, None:
		default:
			t.Fatalf("Parse(%q) accepted mode %q", text, p.Mode)
		}
		if p.MaxAge < 0 || p.MaxAge > MaxAge || p.MaxAge%time.Second != 0 {
			t.Fatalf("Parse(%q) gave max_age %v", text, p.MaxAge)
		}
		for _, mx := range p.MX {
			host := strings.TrimPrefix(mx, "*.")
			if host == "" || strings.ContainsFunc(host, func(r rune) bool {
				return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '.')
			}) {
				t.Fatalf("Parse(%q) accepted the pattern %q", text, mx)
			}
			if !strings.HasPrefix(mx, "*.") && !p.Matches(mx) {
				t.Fatalf("Parse(%q): %q does not match itself", text, mx)
			}
		}
		again, err := Parse(p.String())
		if err != nil || again.String() != p.String() {
			t.Fatalf("Parse(%q).String() = %q reads back as %+v, %v", text, p.String(), again, err)
		}
	})
}

// FuzzParseRecord feeds _mta-sts TXT records: ParseRecord must not panic,
// and an id it returns is 1 to 32 letters and digits.
func FuzzParseRecord(f *testing.F) {
	for _, seed := range []string{"v=STSv1; id=20160831085700Z;", "v=STSv1;", "v=STSv1; id=a; id=b", "v=STSv1;id=", "v=spf1 -all"} {
		f.Add(seed, "v=STSv1; id=other")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, txts := range [][]string{{a}, {a, b}} {
			id, err := ParseRecord(txts)
			if err != nil {
				continue
			}
			if len(id) == 0 || len(id) > 32 || strings.ContainsFunc(id, func(r rune) bool {
				return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
			}) {
				t.Fatalf("ParseRecord(%q) = %q", txts, id)
			}
		}
	})
}
