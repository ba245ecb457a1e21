package main

import (
	"net/mail"
	"net/netip"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// The plugin runs in WebAssembly, where every call and allocation costs
// several times what it does natively: these tests hold the shortcuts it
// takes to the answers of the longer ways, and the shortcuts to their cost.

// TestParseDateAsNetMail checks that parseDate answers as mail.ParseDate
// for dates in the usual form and around it, and that the usual form costs
// at most an allocation (mail.ParseDate makes an error for each of the 24
// layouts it tries first).
func TestParseDateAsNetMail(t *testing.T) {
	dates := []string{
		"Mon, 07 Dec 2026 00:23:45 +0000",
		"Mon, 7 Dec 2026 00:23:45 -0830",
		"mon, 7 dec 2026 00:23:45 +0100",
		"Sun, 31 Dec 1999 23:59:59.123 +1400",
		"Mon, 07 Dec 26 00:23:45 +0000",
		"Mon, 07 Dec 2026 00:23 +0000",
		"Mon, 07 Dec 2026 00:23:45 GMT",
		"Mon, 07 Dec 2026 00:23:45 +0000 (UTC)",
		"Mon, 07 Dec 2026 00:23:45 +0000 ",
		" Mon, 07 Dec 2026 00:23:45 +0000",
		"Mon,  7 Dec 2026 00:23:45 +0000",
		"Mon, 07 Dec 2026 00:23:45 +00",
		"Mon, 07 Dec 2026 25:23:45 +0000",
		"Mon, 31 Feb 2026 00:23:45 +0000",
		"Xyz, 07 Dec 2026 00:23:45 +0000",
		"07 Dec 2026 00:23:45 +0000",
		"Mon, 07 Dec 2026 00:23:45 +0000\r\n",
		"Mon, 07 Dec -2026 00:23:45 +0000",
		"Mon, 07 Dec 2026 00:23:45 -0000 junk",
		"",
		"yesterday",
	}
	for _, d := range dates {
		got, gotErr := parseDate(d)
		want, wantErr := mail.ParseDate(d)
		if (gotErr == nil) != (wantErr == nil) || !got.Equal(want) || got.Location().String() != want.Location().String() {
			t.Errorf("parseDate(%q) = %v, %v; mail.ParseDate: %v, %v", d, got, gotErr, want, wantErr)
		}
	}
	if n := testing.AllocsPerRun(100, func() { parseDate("Mon, 07 Dec 2026 00:23:45 +0000") }); n > 1 {
		t.Errorf("parseDate of the usual form took %v allocations, want at most 1", n)
	}
}

// TestCheckedAsCanonical checks that checked picks a field name exactly
// when its canonical form is one of checkedFields, as the map of the
// message's fields is keyed.
func TestCheckedAsCanonical(t *testing.T) {
	names := []string{
		"Date", "date", "DATE", "Message-ID", "message-id", "Subject", "sUbJeCt", "From", "Reply-To",
		"Content-Type", "content-transfer-encoding", "Content-Disposition",
		"Sender", "To", "DKIM-Signature", "ARC-Seal", "X-Subject", "Subject2", "Subjec", "Sub ject",
		"Dat", "From_", "ſubject", "Content-Type\u212a", "Reply_To", "", "Data", "Frőm",
	}
	for _, n := range names {
		want := slices.Contains(checkedFields, textproto.CanonicalMIMEHeaderKey(n))
		if got := checked([]byte(n)); got != want {
			t.Errorf("checked(%q) = %v, want %v", n, got, want)
		}
	}
}

// TestParseMessageKeepsCheckedFields checks that the message's fields are
// those the checks read, with the values of the whole header's parse, and
// that the others cost no allocation.
func TestParseMessageKeepsCheckedFields(t *testing.T) {
	block := "DKIM-Signature: v=1; a=rsa-sha256; d=example.org;\r\n b=" + strings.Repeat("x", 400) + "\r\n" +
		"ARC-Seal: i=1; cv=none;\r\n b=" + strings.Repeat("y", 400) + "\r\n" +
		"From: Alice <alice@example.org>\r\nTo: info@example.test\r\nSubject: hello\r\n there\r\n" +
		"Date: Mon, 07 Dec 2026 00:23:45 +0000\r\nMessage-ID: <1@example.org>\r\nsubject: again\r\n" +
		"Content-Type: text/plain\r\nReceived: from x by y\r\n"
	c, err := newConfig(settings{})
	if err != nil {
		t.Fatal(err)
	}
	m := parseMessage([]byte(block), []byte("hi\r\n"), c.limits)
	want := mail.Header{}
	for _, f := range abi.ParseHeader([]byte(block)) {
		if k := textproto.CanonicalMIMEHeaderKey(f.Name); slices.Contains(checkedFields, k) {
			want[k] = append(want[k], f.Value)
		}
	}
	if !reflect.DeepEqual(m.header, want) {
		t.Errorf("header = %q, want %q", m.header, want)
	}
	skipped := []byte(strings.Repeat("DKIM-Signature: v=1;\r\n b="+strings.Repeat("x", 400)+"\r\n", 4))
	if n := testing.AllocsPerRun(100, func() { abi.ParseHeaderFunc(skipped, checked) }); n != 0 {
		t.Errorf("four DKIM signatures took %v allocations, want 0", n)
	}
}

// TestIsIPHostAsNetip checks isIPHost against its longer form, netip's
// parse before the decimal and hex forms, and that a name costs no
// allocation.
func TestIsIPHostAsNetip(t *testing.T) {
	long := func(host string) bool {
		if _, err := netip.ParseAddr(host); err == nil {
			return true
		}
		if strings.HasPrefix(host, "0x") {
			return strings.Trim(host[2:], "0123456789abcdef.") == ""
		}
		return strings.Trim(host, "0123456789.") == ""
	}
	hosts := []string{
		"192.0.2.1", "192.0.2.256", "1.2.3", "3232235777", "0xc0a80001", "0xc0.0xa8.0.1", "0x", "0xzz",
		"::1", "2001:db8::1", "fe80::1%eth0", "::ffff:192.0.2.1", "2001:db8:::1", "a:b", ":",
		"1.2.3.4%eth0", "www.example.com", "example", "1example.com", "", ".", "..", "1.2.3.4.",
	}
	for _, h := range hosts {
		if got, want := isIPHost(h), long(h); got != want {
			t.Errorf("isIPHost(%q) = %v, want %v", h, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { isIPHost("click.example.com") }); n != 0 {
		t.Errorf("isIPHost of a name took %v allocations, want 0", n)
	}
}
