package spf

import (
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

func TestCheckRecordAccepts(t *testing.T) {
	for _, record := range []string{
		"v=spf1",
		"V=SPF1 -ALL",
		"v=spf1 include:_spf.google.com include:spf.protection.outlook.com ~all",
		"v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 ip6:2001:db8::/32 ip6:::ffff:192.0.2.1 -all",
		"v=spf1 a mx a/24 mx//64 a:mail.example.com/24//64 mx:example.com. ptr ptr:example.com ?all",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} redirect=_spf.example.com exp=explain.%{d2}",
		"v=spf1 a:%{H} exists:%{i}.%%.%_.%-.example.com -all",
		"v=spf1 a:x.1-1 a:x.xn--p1ai -all", // toplabels: hyphenated numbers, IDNA
		"v=spf1 -all   ",                   // extra spaces
		"v=spf1 moo.cow-far_out=man:dog/cat ra=foo.%{d} -all",
	} {
		if err := checkRecord(record); err != nil {
			t.Errorf("%q: %v", record, err)
		}
	}
}

func TestCheckRecordRejects(t *testing.T) {
	tests := []struct{ record, why string }{
		{"v=spf1 ip4:192.0.2.1 -all foo", "unknown mechanism"},
		{"v=spf1 redirect:example.com", "unknown mechanism"},
		{"v=spf1 -all:foo", "all takes nothing"},
		{"v=spf1 +", "unknown mechanism"},
		{"v=spf1 include", "needs :domain"},
		{"v=spf1 exists:", "empty domain"},
		{"v=spf1 ptr/24", "ptr takes only"},
		{"v=spf1 a:museum", "top-level label"},
		{"v=spf1 a:example.123", "top-level label"},
		{"v=spf1 a:example.-com", "top-level label"},
		{"v=spf1 mx:%{d}com", "top-level label"},
		{"v=spf1 a/33", "bad IPv4 CIDR length"},
		{"v=spf1 a//129", "bad IPv6 CIDR length"},
		{"v=spf1 a/024", "bad IPv4 CIDR length"},
		{"v=spf1 a/", "bad CIDR length"},
		{"v=spf1 ip4:192.0.2.1/032", "bad CIDR length"},
		{"v=spf1 ip4:192.0.2.01", "bad ip4 address"},
		{"v=spf1 ip4:2001:db8::1", "bad ip4 address"},
		{"v=spf1 ip6:192.0.2.1", "bad ip6 address"},
		{"v=spf1 ip6:fe80::1%eth0", "bad ip6 address"},
		{"v=spf1 ip6", "needs :address"},
		{"v=spf1 exists:%{c}.example.com", "bad macro"},
		{"v=spf1 exists:%{s0}.example.com.%{x}", "bad macro"},
		{"v=spf1 exists:%{d", "unterminated macro"},
		{"v=spf1 exists:example.com%", "lone %"},
		{"v=spf1 a:foo.example.com\x00", "not allowed"},
		{"v=spf1 a:ex\u00e4mple.com -all", "not allowed"},
		{"v=spf1 redirect=a.example.com redirect=b.example.com", "given twice"},
		{"v=spf1 exp=a.example.com exp=b.example.com -all", "given twice"},
		{"v=spf1 redirect=", "empty domain"},
		{"v=spf1 foo=%q -all", "bad macro"},
	}
	for _, tc := range tests {
		err := checkRecord(tc.record)
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%q: error %v, want one saying %q", tc.record, err, tc.why)
		}
	}
}

func TestIsSPFRecord(t *testing.T) {
	for txt, want := range map[string]bool{
		"v=spf1":         true,
		"V=Spf1 -all":    true,
		"v=spf1-all":     false,
		"v=spf10 -all":   false,
		"v=spf":          false,
		" v=spf1 -all":   false,
		"spf2.0/pra -al": false,
	} {
		if got := isSPFRecord(txt); got != want {
			t.Errorf("isSPFRecord(%q) = %v, want %v", txt, got, want)
		}
	}
}

func TestEscaping(t *testing.T) {
	names := map[string]string{
		"example.com.":                         "example.com.",
		"macro%percent  space%20url.example.":  `macro%percent\ \ space%20url.example.`,
		"jumpin' jupiter":                      `jumpin\'\ jupiter`,
		"a\x00b\x96;(@)\"\\.test":              `a\000b\150\;\(\@\)\"\\.test`,
		"foo:bar/baz.example.com":              "foo:bar/baz.example.com",
		"1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.":    "1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
		"v=spf1 a:\xef\xbb\xbfgarbage.example": `v=spf1\ a:\239\187\191garbage.example`,
	}
	for raw, escaped := range names {
		if got := escapeName(raw); got != escaped {
			t.Errorf("escapeName(%q) = %q, want %q", raw, got, escaped)
		}
		if got := resolver.Unescape(escaped); got != raw {
			t.Errorf("resolver.Unescape(%q) = %q, want %q", escaped, got, raw)
		}
	}
	// Character strings as miekg/dns presents them: only \X and \DDD.
	if got := resolver.Unescape(`say \"hi\" \\ \255\0009`); got != "say \"hi\" \\ \xff\x009" {
		t.Errorf("unescape = %q", got)
	}
	if got := resolver.Unescape(`ends in \`); got != `ends in \` {
		t.Errorf("dangling backslash: %q", got)
	}
}

func FuzzCheckRecord(f *testing.F) {
	f.Add("v=spf1 a:mail.example.com/24//64 exists:%{ir}.%{l1r+-}._spf.%{d} redirect=x.example.com")
	f.Add("v=spf1 ip6:2001:db8::/32 ip4:192.0.2.0/24 -all")
	f.Fuzz(func(t *testing.T, record string) {
		checkRecord("v=spf1 " + record) // must not panic
		if got := resolver.Unescape(escapeName(record)); got != record {
			t.Errorf("escape round trip: %q became %q", record, got)
		}
	})
}
