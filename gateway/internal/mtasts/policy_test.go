package mtasts

import (
	"strings"
	"testing"
	"time"
)

func TestPolicyRoundTrip(t *testing.T) {
	p := Policy{Mode: Enforce, MX: []string{"mx1.example.com", "*.example.net"}, MaxAge: 7 * 24 * time.Hour}
	text := p.String()
	want := "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"
	if text != want {
		t.Fatalf("String() = %q, want %q", text, want)
	}
	got, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != text {
		t.Errorf("Parse(String()) = %+v", got)
	}
	id := p.ID()
	if len(id) == 0 || len(id) > 32 {
		t.Errorf("ID() = %q", id)
	}
	if p2 := (Policy{Mode: Testing, MX: p.MX, MaxAge: p.MaxAge}); p2.ID() == id {
		t.Error("a changed policy kept its id")
	}
	if rid, err := ParseRecord([]string{"unrelated", p.Record()}); err != nil || rid != id {
		t.Errorf("ParseRecord(Record()) = %q, %v; want %q", rid, err, id)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		text, err string
	}{
		{"version: STSv1\nmode: testing\nmx: mail.example.com\nmax_age: 86400\nfuture: x\n", ""},
		{"version: STSv1\nmode: none\nmax_age: 86400\n", ""},
		{"version: STSv1\nmode: enforce\nmax_age: 86400\n", "without any mx"},
		{"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 86400\n", "not STSv1"},
		{"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 86400\n", "not enforce"},
		{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "max_age"},
		{"version: STSv1\nmode: enforce\nmx: a.example\n", "max_age"},
		{"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", "not a host name"},
		{"version: STSv1\nmode enforce\n", "key: value"},
		{"version: STSv1\nmode: enforce\nmx: a\rb.example\nmax_age: 1\n", "not a host name"},
		{"version: STSv1\nmode: enforce\nmx: mx_1.example\nmax_age: 1\n", "not a host name"},
		{strings.Repeat("x", MaxPolicySize+1), "larger"},
	} {
		_, err := Parse(tc.text)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Parse(%q) = %v, want an error with %q", tc.text, err, tc.err)
		}
	}
	p, err := Parse("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n")
	if err == nil {
		t.Errorf("an 11-digit max_age was read as %v", p.MaxAge)
	}
	p, _ = Parse("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999\n")
	if p.MaxAge != MaxAge {
		t.Errorf("max_age over a year = %v, want %v", p.MaxAge, MaxAge)
	}
}

func TestMatches(t *testing.T) {
	p := Policy{Mode: Enforce, MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com":      true,
		"MAIL.example.com.":     true,
		"other.example.com":     false,
		"mx.example.net":        true,
		"a.mx.example.net":      false, // a wildcard is one label
		"example.net":           false,
		".example.net":          false,
		"mail.example.com.evil": false,
	} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		txts []string
		id   string
		err  string
	}{
		{[]string{"v=STSv1; id=20160831085700Z;"}, "20160831085700Z", ""},
		{[]string{"v=spf1 -all"}, "", "no MTA-STS record"},
		{[]string{"v=STSv1; id=a", "v=STSv1; id=b"}, "", "more than one"},
		{[]string{"v=STSv1;"}, "", "no id"},
		{[]string{"v=STSv1; id=bad-id"}, "", "letters and digits"},
	} {
		id, err := ParseRecord(tc.txts)
		if id != tc.id || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseRecord(%q) = %q, %v; want %q, %q", tc.txts, id, err, tc.id, tc.err)
		}
	}
}
