package message

import (
	"bytes"
	"strings"
	"testing"
)

func TestNormalizeLineEndings(t *testing.T) {
	cases := map[string]string{
		"a\r\nb\r\n":           "a\r\nb\r\n",
		"a\nb\n":               "a\r\nb\r\n",
		"\n.\n":                "\r\n.\r\n",
		"a\r\n.\nb\r.\r\n":     "a\r\n.\r\nb\r\n.\r\n",
		"\r.\r":                "\r\n.\r\n",
		"a\r\r\nb":             "a\r\n\r\nb",
		"a\n\rb":               "a\r\n\r\nb",
		"\rstart and end\n":    "\r\nstart and end\r\n",
		"mixed\r\nbare\nend\n": "mixed\r\nbare\r\nend\r\n",
	}
	for in, want := range cases {
		if got := string(NormalizeLineEndings([]byte(in))); got != want {
			t.Errorf("NormalizeLineEndings(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]int{"a\r\nb\r\n": 0, "": 0, "\n": 1, "\r": 1, "\r\r\n": 1, "\n\r": 2, "a\nb\rc\r\n": 2} {
		if got := BareLineEndings([]byte(in)); got != want {
			t.Errorf("BareLineEndings(%q) = %d, want %d", in, got, want)
		}
	}
	clean := []byte("a\r\nb\r\n")
	if got := NormalizeLineEndings(clean); &got[0] != &clean[0] {
		t.Error("a clean message was copied")
	}
}

func TestSplitAndFields(t *testing.T) {
	msg := []byte("Received: from a\r\n\tby b\r\nSubject: hi\r\nX-Empty:\r\nnot a field\r\n\r\nbody\r\n\r\nmore\r\n")
	h, body := Split(msg)
	if string(body) != "body\r\n\r\nmore\r\n" {
		t.Fatalf("body = %q", body)
	}
	f := Fields(h)
	names := []string{}
	var joined []byte
	for _, x := range f {
		names = append(names, x.Name)
		joined = append(joined, x.Raw...)
	}
	if got := strings.Join(names, "|"); got != "Received|Subject|X-Empty|" {
		t.Errorf("names = %q", got)
	}
	if !bytes.Equal(joined, h) {
		t.Errorf("fields do not join back to the header: %q vs %q", joined, h)
	}
	if Count(h, "received") != 1 || Count(h, "To") != 0 {
		t.Error("Count is wrong")
	}
	if got := string(Remove(h, []string{"SUBJECT", "received"})); got != "X-Empty:\r\nnot a field\r\n" {
		t.Errorf("Remove = %q", got)
	}
	if h, b := Split([]byte("\r\nonly body")); h != nil || string(b) != "only body" {
		t.Errorf("empty header: %q %q", h, b)
	}
	if h, b := Split([]byte("A: b\r\n")); string(h) != "A: b\r\n" || b != nil {
		t.Errorf("header only: %q %q", h, b)
	}
}

func TestFormatField(t *testing.T) {
	got := string(FormatField("X-Test", "one\r\nInjected: yes"))
	if got != "X-Test: one  Injected: yes\r\n" {
		t.Errorf("CRLF in a value must not start a new field: %q", got)
	}
	long := strings.Repeat("word ", 40)
	out := FormatField("Received", long)
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line longer than 78: %q", line)
		}
	}
	if unfolded := strings.ReplaceAll(string(out), "\r\n\t", " "); unfolded != "Received: "+long+"\r\n" {
		t.Errorf("folding changed the value: %q", unfolded)
	}
}

// A clean 64 KiB message, the common case: only counted, never copied.
func BenchmarkNormalizeLineEndingsClean(b *testing.B) {
	msg := bytes.Repeat([]byte(strings.Repeat("x", 70)+"\r\n"), 64<<10/72)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		NormalizeLineEndings(msg)
	}
}

// The rule the relay and the queue share: a UTF-8 local part anywhere in
// the envelope, or a UTF-8 header sent with SMTPUTF8; never a domain.
func TestNeedsSMTPUTF8(t *testing.T) {
	ascii := []byte("From: <alice@example.org>\r\nSubject: hello\r\n")
	utf8 := []byte("From: <pelé@example.org>\r\nSubject: piñata\r\n")
	cases := []struct {
		name     string
		smtputf8 bool
		from     string
		rcpts    []string
		header   []byte
		want     bool
	}{
		{"all ASCII, said SMTPUTF8", true, "alice@example.org", []string{"me@dest.test"}, ascii, false},
		{"a UTF-8 domain only", true, "alice@piñata.example", []string{"me@piñata.example"}, ascii, false},
		{"a UTF-8 reverse-path", false, "SRS0=AbCd=T5=example.org=pelé@ours.test", []string{"me@dest.test"}, ascii, true},
		{"a UTF-8 recipient", false, "", []string{"me@dest.test", "piñata@dest.test"}, ascii, true},
		{"a UTF-8 header with SMTPUTF8", true, "alice@example.org", []string{"me@dest.test"}, utf8, true},
		{"an 8-bit header without SMTPUTF8", false, "alice@example.org", []string{"me@dest.test"}, utf8, false},
	}
	for _, c := range cases {
		if got := NeedsSMTPUTF8(c.smtputf8, c.from, c.rcpts, c.header); got != c.want {
			t.Errorf("%s: NeedsSMTPUTF8 = %v, want %v", c.name, got, c.want)
		}
	}
}
