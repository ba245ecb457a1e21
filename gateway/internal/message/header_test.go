package message

import (
	"bytes"
	"strings"
	"testing"
)

// names lists the names of h's fields, "|"-separated.
func names(h *Header) string {
	var n []string
	for _, f := range h.Fields() {
		n = append(n, f.Name)
	}
	return strings.Join(n, "|")
}

func TestParseHeader(t *testing.T) {
	block := []byte("Received: from a\r\n\tby b\r\n  and c\r\nSubject : hi\r\nX-Empty:\r\nnot a field\r\nBare\r\n" +
		"received: from d\r\nSUBJECT: again\r\n: no name\r\nLast: no CRLF")
	h := ParseHeader(block)
	if got, want := names(h), "Received|Subject|X-Empty|||received|SUBJECT||Last"; got != want {
		t.Errorf("names = %q, want %q", got, want)
	}
	if h.Len() != 9 {
		t.Errorf("Len = %d, want 9", h.Len())
	}
	if got := h.Fields()[0].Raw; string(got) != "Received: from a\r\n\tby b\r\n  and c\r\n" {
		t.Errorf("folded field = %q", got)
	}
	if got := h.Fields()[8].Raw; string(got) != "Last: no CRLF" {
		t.Errorf("last field = %q", got)
	}
	if !bytes.Equal(h.AppendTo(nil), block) || &h.Bytes()[0] != &block[0] {
		t.Error("the fields do not give back the block it was parsed from")
	}
	// Each field is a window on the block, not a copy.
	for _, f := range h.Fields() {
		if i := bytes.Index(block, f.Raw); i < 0 || &block[i] != &f.Raw[0] {
			t.Errorf("field %q is not a window on the block", f.Raw)
		}
	}

	for name, want := range map[string]int{"received": 2, "RECEIVED": 2, "Subject": 2, "x-empty": 1, "Bare": 0, "": 0, "not a field": 0, "To": 0, "last": 1} {
		if got := h.Count(name); got != want {
			t.Errorf("Count(%q) = %d, want %d", name, got, want)
		}
	}
	if f, ok := h.Get("subject", 0); !ok || f.Value() != "hi" {
		t.Errorf("Get(subject, 0) = %q, %v", f.Raw, ok)
	}
	if f, ok := h.Get("Subject", 1); !ok || f.Value() != "again" {
		t.Errorf("Get(Subject, 1) = %q, %v", f.Raw, ok)
	}
	if _, ok := h.Get("Subject", 2); ok {
		t.Error("Get(Subject, 2) found a third Subject")
	}
	if got := len(h.All("Received")); got != 2 || h.All("Received")[1].Value() != "from d" {
		t.Errorf("All(Received) = %d fields", got)
	}
	// Names match in ASCII case only, as DKIM matches them; Without
	// removes as Remove does (strings.EqualFold: ſ is s).
	u := ParseHeader([]byte("\u017fubject: x\r\nSubject: y\r\n"))
	if u.Count("subject") != 1 || u.Without("SUBJECT").Len() != 0 {
		t.Error("non-ASCII names match wrongly")
	}
	long := strings.Repeat("x", 100)
	if h.Count(long) != 0 {
		t.Error("a long name was found")
	}
}

func TestParseHeaderEmpty(t *testing.T) {
	var none *Header
	if none.Len() != 0 || none.Count("From") != 0 || none.Bytes() != nil || none.Size() != 0 || len(none.AppendTo(nil)) != 0 {
		t.Error("a nil Header is not empty")
	}
	if _, ok := none.Get("From", 0); ok {
		t.Error("a nil Header has a From")
	}
	if none.Without("From") != none || none.WithoutFunc(func(Field) bool { return true }) != none || names(none.Prepend([]byte("A: 1\r\n"))) != "A" {
		t.Error("the views of a nil Header are wrong")
	}
	for _, block := range [][]byte{nil, {}} {
		h := ParseHeader(block)
		if h.Len() != 0 || h.Count("From") != 0 || len(h.Bytes()) != 0 || len(h.Without("From").Fields()) != 0 {
			t.Errorf("ParseHeader(%q) is not empty", block)
		}
		if p := h.Prepend([]byte("A: 1\r\n")); names(p) != "A" {
			t.Errorf("Prepend on an empty header = %q", names(p))
		}
	}
}

func TestHeaderAgreesWithFields(t *testing.T) {
	block := benchHeader()
	h := ParseHeader(block)
	fields := Fields(block)
	if len(fields) != h.Len() {
		t.Fatalf("ParseHeader has %d fields, Fields %d", h.Len(), len(fields))
	}
	for i, f := range fields {
		if g := h.Fields()[i]; g.Name != f.Name || !bytes.Equal(g.Raw, f.Raw) {
			t.Errorf("field %d: %q %q, Fields: %q %q", i, g.Name, g.Raw, f.Name, f.Raw)
		}
	}
	if h.Count("Received") != Count(block, "Received") {
		t.Error("Count differs")
	}
}

func TestHeaderViews(t *testing.T) {
	block := []byte("Received: a\r\nSubject: s\r\nX-Spam: yes\r\n\tfolded\r\nnot a field\r\nx-spam: no\r\nTo: b\r\n")
	h := ParseHeader(block)

	if h.Without("Cc") != h {
		t.Error("Without a name not there is not h itself")
	}
	w := h.Without("x-SPAM", "received")
	if got := string(w.Bytes()); got != string(Remove(block, []string{"x-SPAM", "received"})) || got != "Subject: s\r\nnot a field\r\nTo: b\r\n" {
		t.Errorf("Without = %q", got)
	}
	if w.Count("X-Spam") != 0 || w.Count("to") != 1 || h.Count("X-Spam") != 2 {
		t.Error("the view's index, or the original's, is wrong")
	}
	if got := string(h.Without("").Bytes()); got != string(Remove(block, []string{""})) {
		t.Errorf(`Without("") = %q`, got)
	}
	if &w.Fields()[0].Raw[0] != &block[len("Received: a\r\n")] {
		t.Error("the view copied the original's bytes")
	}

	p := w.Prepend([]byte("Authentication-Results: mx; none\r\nReceived: by us\r\n\tfolded\r\n"))
	if got, want := names(p), "Authentication-Results|Received|Subject||To"; got != want {
		t.Errorf("Prepend names = %q, want %q", got, want)
	}
	if got, want := string(p.Bytes()), "Authentication-Results: mx; none\r\nReceived: by us\r\n\tfolded\r\nSubject: s\r\nnot a field\r\nTo: b\r\n"; got != want {
		t.Errorf("Prepend = %q", got)
	}
	if f, ok := p.Get("received", 0); !ok || f.Value() != "by us\tfolded" {
		t.Errorf("Prepend's Received = %q", f.Raw)
	}
	if &p.Fields()[2].Raw[0] != &w.Fields()[0].Raw[0] {
		t.Error("Prepend copied the original's fields")
	}
	if w.Len() != 3 || h.Len() != 6 {
		t.Error("a view changed the header it was made from")
	}
	if p.Prepend(nil) != p {
		t.Error("Prepend of nothing is not h itself")
	}

	// A header that began with a continuation line continues the last
	// field put on top, as it does for whoever reads the two joined.
	lead := ParseHeader([]byte(" leading: x\r\nTo: b\r\n"))
	on := lead.Prepend([]byte("Received: by us\r\n"))
	if got, want := names(on), "Received|To"; got != want || string(on.Fields()[0].Raw) != "Received: by us\r\n leading: x\r\n" {
		t.Errorf("Prepend on a leading continuation = %q %q", got, on.Fields()[0].Raw)
	}
}
