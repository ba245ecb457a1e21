package dkim

import (
	"bytes"
	"strings"
	"testing"
)

// TestSelectFields: each occurrence of a name in h= takes the next field of
// that name from the bottom, names match without regard to ASCII case, a
// name with no field left picks nothing, and the excepted field is skipped.
// Signing, DKIM verification and package arc all choose with this one
// function.
func TestSelectFields(t *testing.T) {
	fields, _ := splitMessage([]byte("Received: 1\r\nFrom: a\r\nTo: b\r\nreceived: 2\r\nSubject: s\r\nFROM: c\r\n" +
		"\u017fubject: long s\r\n\r\n"))
	for _, tc := range []struct {
		names  []string
		except int
		want   string // the raw fields picked, in order
	}{
		{[]string{"from"}, -1, "FROM: c"},
		{[]string{"from", "from", "from"}, -1, "FROM: c|From: a"},
		{[]string{"received", "from", "received", "to", "subject", "missing"}, -1, "received: 2|FROM: c|Received: 1|To: b|Subject: s"},
		{[]string{"subject", "received", "received", "received"}, -1, "Subject: s|received: 2|Received: 1"},
		{[]string{"from", "from"}, 5, "From: a"},
		{[]string{"from", "to"}, 1, "FROM: c|To: b"},
		{nil, -1, ""},
	} {
		var got []string
		for _, f := range selectFields(fields, tc.names, tc.except) {
			got = append(got, strings.TrimSuffix(string(f.raw), "\r\n"))
		}
		if strings.Join(got, "|") != tc.want {
			t.Errorf("%v except %d: picked %q, want %q", tc.names, tc.except, strings.Join(got, "|"), tc.want)
		}
		// The signer's relaxed form is the canonicalization of the same
		// choice.
		var want []byte
		for _, f := range selectFields(fields, tc.names, -1) {
			want = appendRelaxedHeader(want, f.raw)
		}
		if got := appendSignedHeaders(nil, fields, tc.names); !bytes.Equal(got, want) {
			t.Errorf("%v: appendSignedHeaders gives %q, want %q", tc.names, got, want)
		}
	}
}

// TestCanonicalForms checks the "simple" forms (RFC 6376 §3.4.1, §3.4.3)
// and that a bare LF counts as a line end, as it does on the SMTP wire.
func TestCanonicalForms(t *testing.T) {
	for body, want := range map[string]string{
		"":                   "\r\n",
		"\r\n":               "\r\n",
		"\r\n\r\n\r\n":       "\r\n",
		"a  b \r\n":          "a  b \r\n",
		"a\r\n\r\n":          "a\r\n",
		"a\r\n\r\nb":         "a\r\n\r\nb\r\n",
		"a \r\n \r\n\r\n":    "a \r\n \r\n",
		"no line end at all": "no line end at all\r\n",
		"a\n\nb\n\n":         "a\r\n\r\nb\r\n",
		"\n\n":               "\r\n",
	} {
		var got bytes.Buffer
		writeCanonBody(&got, []byte(body), "simple")
		if got.String() != want {
			t.Errorf("simple body %q = %q, want %q", body, got.String(), want)
		}
	}
	for raw, want := range map[string]string{
		"Subject:  a \r\n\tb \r\n": "Subject:  a \r\n\tb \r\n",
		"Subject: a\n b\n":         "Subject: a\r\n b\r\n",
		"X:\r\n":                   "X:\r\n",
	} {
		if got := string(appendCanonHeader(nil, []byte(raw), "simple")); got != want {
			t.Errorf("simple header %q = %q, want %q", raw, got, want)
		}
	}
	if got := string(appendCanonHeader(nil, []byte("SubJect : a \r\n\tb \r\n"), "relaxed")); got != "subject:a b\r\n" {
		t.Errorf("relaxed header = %q", got)
	}
}
