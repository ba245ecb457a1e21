package abi

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseHeader(t *testing.T) {
	block := "From: a@example.test\r\n" +
		"Subject:  hello\r\n world\r\n\tagain \r\n" +
		"not a field\r\n" +
		"X-Empty:\r\n" +
		"X-Spaced : v\r\n" +
		"X-LF: bare\n more\n"
	want := []Header{
		{"From", "a@example.test"},
		{"Subject", "hello world\tagain"},
		{"X-Empty", ""},
		{"X-Spaced", "v"},
		{"X-LF", "bare more"},
	}
	if got := ParseHeader([]byte(block)); !reflect.DeepEqual(got, want) {
		t.Errorf("ParseHeader =\n%q\nwant\n%q", got, want)
	}
	if got := ParseHeader(nil); got != nil {
		t.Errorf("ParseHeader(nil) = %q", got)
	}
}

// TestFieldValue: the value of one raw field, as the gateway's header_get
// answers, is what ParseHeader reads for it, folded or not.
func TestFieldValue(t *testing.T) {
	for _, raw := range []string{
		"From: a@example.test\r\n",
		"Subject:  hello\r\n world\r\n\tagain \r\n",
		"X-Empty:\r\n",
		"X-Spaced : v\r\n",
		"X-LF: bare\n more\n",
		"X-Colon: a: b\r\n",
		"X-Blank:   \r\n \r\n",
		"X-No-End: v",
	} {
		want := ParseHeader([]byte(raw))[0].Value
		if got := FieldValue([]byte(raw)); got != want {
			t.Errorf("FieldValue(%q) = %q, ParseHeader reads %q", raw, got, want)
		}
	}
}

// TestParseHeaderFunc checks that keep picks fields by their name as
// written, trimmed, that what it keeps reads as ParseHeader reads it, and
// that the fields it passes over cost nothing: a plugin reading a few
// fields does not pay for the DKIM signatures beside them.
func TestParseHeaderFunc(t *testing.T) {
	block := []byte("DKIM-Signature: v=1; a=rsa-sha256;\r\n b=" + strings.Repeat("x", 300) + "\r\n" +
		"Subject:  hello\r\n world\r\n" +
		"not a field\r\n" +
		"X-Spaced : v\r\n" +
		"subject: again\r\n")
	var asked []string
	got := ParseHeaderFunc(block, func(name []byte) bool {
		asked = append(asked, string(name))
		return strings.EqualFold(string(name), "subject") || string(name) == "X-Spaced"
	})
	want := []Header{{"Subject", "hello world"}, {"X-Spaced", "v"}, {"subject", "again"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseHeaderFunc =\n%q\nwant\n%q", got, want)
	}
	if names := []string{"DKIM-Signature", "Subject", "X-Spaced", "subject"}; !reflect.DeepEqual(asked, names) {
		t.Errorf("keep was asked about %q, want %q", asked, names)
	}
	if got := ParseHeaderFunc(block, nil); !reflect.DeepEqual(got, ParseHeader(block)) {
		t.Errorf("ParseHeaderFunc(nil) = %q, not ParseHeader's", got)
	}
	if n := testing.AllocsPerRun(100, func() { ParseHeaderFunc(block, func([]byte) bool { return false }) }); n != 0 {
		t.Errorf("passing over every field took %v allocations, want 0", n)
	}
}

func TestStringsRoundTrip(t *testing.T) {
	for _, list := range [][]string{nil, {""}, {"a", "b\x00c", string(make([]byte, 300))}} {
		got, err := DecodeStrings(AppendStrings(nil, list))
		if err != nil || len(got) != len(list) || (len(list) > 0 && !reflect.DeepEqual(got, list)) {
			t.Errorf("round trip of %q = %q, %v", list, got, err)
		}
	}
	if _, err := DecodeStrings([]byte{5, 1, 'a'}); err == nil {
		t.Error("a count larger than the bytes left decoded")
	}
}

func TestCapabilities(t *testing.T) {
	var all Capability
	for _, name := range CapabilityNames() {
		c, ok := ParseCapability(name)
		if !ok || c.String() != name {
			t.Errorf("ParseCapability(%q) = %v, %v", name, c, ok)
		}
		all |= c
	}
	if all.String() != "headers,body,dns,kv,metrics,http" || !all.Has(CapDNS|CapKV) {
		t.Errorf("all = %q", all)
	}
	if _, ok := ParseCapability("log"); ok {
		t.Error("log is always granted; it is no capability")
	}
}

func TestErrorText(t *testing.T) {
	if ErrorText(ErrDenied) != "capability not granted" || ErrorText(-42) != "unknown error -42" {
		t.Errorf("ErrorText: %q, %q", ErrorText(ErrDenied), ErrorText(-42))
	}
}
