package abi

import (
	"reflect"
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
