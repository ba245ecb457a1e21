package dkim

import (
	"bytes"
	"math/rand/v2"
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

// relaxedBodyReference is RFC 6376 §3.4.4 written as plainly as possible,
// for TestRelaxedBody to compare with: lines end at LF (a CR before it
// belongs to the line end), whitespace runs become one space, whitespace
// at line ends goes, empty lines at the end go, and a non-empty body ends
// in CRLF.
func relaxedBodyReference(body string) string {
	lines := strings.Split(body, "\n")
	if strings.HasSuffix(body, "\n") {
		lines = lines[:len(lines)-1]
	}
	var out []string
	for _, line := range lines {
		line = strings.TrimSuffix(line, "\r")
		var b strings.Builder
		space := false
		for _, c := range []byte(line) {
			if c == ' ' || c == '\t' {
				space = true
				continue
			}
			if space {
				b.WriteByte(' ')
				space = false
			}
			b.WriteByte(c)
		}
		out = append(out, b.String())
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\r\n") + "\r\n"
}

// TestRelaxedBody compares the relaxed body canonicalization, with its
// shortcut for bodies that need no change, with the reference on every
// body of up to 6 bytes made of the characters that matter, and on
// random longer ones.
func TestRelaxedBody(t *testing.T) {
	const alphabet = "a. \t\r\n"
	check := func(body string) {
		var got bytes.Buffer
		writeRelaxedBody(&got, []byte(body))
		if want := relaxedBodyReference(body); got.String() != want {
			t.Fatalf("relaxed body %q = %q, want %q", body, got.String(), want)
		}
	}
	var all func(prefix string, n int)
	all = func(prefix string, n int) {
		check(prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			all(prefix+string(c), n-1)
		}
	}
	all("", 6)
	rnd := rand.New(rand.NewPCG(1, 2))
	lines := []string{"plain text line\r\n", "\r\n", "two  spaces\r\n", "tab\there\r\n", "trailing \r\n", "bare LF\n", "cr\r\r\n", " lead\r\n", "end"}
	for range 20000 {
		var b strings.Builder
		for range rnd.IntN(8) {
			b.WriteString(lines[rnd.IntN(len(lines))])
		}
		check(b.String())
	}
}

// relaxedHeaderReference is RFC 6376 §3.4.2 written plainly, for
// TestRelaxedHeader: the name in lower case without white space around
// it, the value unfolded (every CR and LF gone), each run of white space
// one space, none at either end.
func relaxedHeaderReference(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	value = strings.NewReplacer("\r", "", "\n", "").Replace(value)
	value = strings.Join(strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
	return strings.ToLower(strings.Trim(name, " \t")) + ":" + value + "\r\n"
}

// TestRelaxedHeader compares the relaxed header canonicalization, with its
// shortcut for values that need no change, with the reference on every
// value of up to 6 bytes made of the characters that matter.
func TestRelaxedHeader(t *testing.T) {
	const alphabet = "a \t\r\n"
	var all func(value string, n int)
	all = func(value string, n int) {
		raw := "Sub Ject :" + value
		if got, want := string(appendRelaxedHeader(nil, []byte(raw))), relaxedHeaderReference(raw); got != want {
			t.Fatalf("relaxed header %q = %q, want %q", raw, got, want)
		}
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			all(value+string(c), n-1)
		}
	}
	all("", 6)
}
