package dkim

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// maxLine is the longest line a DKIM-Signature gets, CRLF not counted; RFC
// 5322 §2.1.1 asks for no more than 78.
const maxLine = 76

// tag is one tag=value of a signature field (RFC 6376 §3.2). The fields are
// exported for package arc, which writes its own.
type tag struct{ Name, Value string }

// signField returns a complete signature field: name, then the tags in the
// order given, the b= tag (which must be among them, empty) holding the
// signature by key of signedHeaders followed by the field itself with an
// empty b=, relaxed and without its CRLF (RFC 6376 §3.7). hash is the
// option for key.Sign. Lines are folded before width columns; width 0
// writes one line.
func signField(name string, tags []tag, signedHeaders []byte, key crypto.Signer, hash crypto.Hash, width int) ([]byte, error) {
	field, at, column := layoutField(name, tags, width)
	h := sha256.New()
	h.Write(signedHeaders)
	canon := appendRelaxedHeader(make([]byte, 0, len(field)), field)
	h.Write(canon[:len(canon)-len("\r\n")])
	sig, err := key.Sign(rand.Reader, h.Sum(nil), hash)
	if err != nil {
		return nil, err
	}
	// The signature goes where layoutField left room for it. What follows
	// starts a new line, so it stays as it was signed.
	f := &fieldWriter{b: make([]byte, 0, 2*len(field)), line: column, width: width}
	f.b = append(f.b, field[:at]...)
	f.chars(base64.StdEncoding.EncodeToString(sig))
	return append(f.b, field[at:]...), nil
}

// layoutField writes a signature field with an empty b= value, and returns
// it with the offset and the column where the value goes.
func layoutField(name string, tags []tag, width int) (field []byte, at, column int) {
	f := newFieldWriter(name, width)
	for i, t := range tags {
		sep := ";"
		if i == len(tags)-1 {
			sep = ""
		}
		if t.Name == "b" {
			f.newLine()
			f.word("b=", true)
			at, column = len(f.b), f.line
			// The ";" stays right after the value, and the tag after it
			// starts a new line whatever the value's length.
			f.b = append(f.b, sep...)
			if sep != "" {
				f.newLine()
			}
			continue
		}
		// Breaks go where the tag grammar allows whitespace: at the
		// spaces in a value, and after the colons of h=.
		f.text(t.Name+"="+t.Value+sep, true)
	}
	return f.bytes(), at, column
}

// foldField returns the header field "name: text", text's runs of spaces and
// tabs written as one space or a fold, folded before width columns (0:
// never): the same text after relaxed canonicalization.
func foldField(name, text string, width int) []byte {
	f := newFieldWriter(name, width)
	f.text(text, false)
	return f.bytes()
}

// fieldWriter writes a header field, breaking lines with CRLF SP before a
// word that would not fit in width (0: never).
type fieldWriter struct {
	b     []byte
	line  int  // length of the current line
	fresh bool // the line was just started by a fold
	width int
}

func newFieldWriter(name string, width int) *fieldWriter {
	b := make([]byte, 0, 1024) // room for most signature fields
	b = append(b, name...)
	return &fieldWriter{b: append(b, ':'), line: len(name) + 1, width: width}
}

// newLine folds, when folding at all; otherwise the next word comes after a
// space as usual.
func (f *fieldWriter) newLine() {
	if f.width > 0 && !f.fresh {
		f.b = append(f.b, "\r\n "...)
		f.line, f.fresh = 1, true
	}
}

// word appends w, after a space if space is set. The fold before a word
// stands for that space.
func (f *fieldWriter) word(w string, space bool) {
	if w == "" {
		return
	}
	n := len(w)
	if space {
		n++
	}
	if f.width > 0 && !f.fresh && f.line+n > f.width {
		f.newLine()
	} else if space && !f.fresh {
		f.b = append(f.b, ' ')
		f.line++
	}
	f.b = append(f.b, w...)
	f.line += len(w)
	f.fresh = false
}

// text appends the words of s, which runs of spaces and tabs separate, each
// after a space or a fold. With colons set, a word may also break after each
// of its colons.
func (f *fieldWriter) text(s string, colons bool) {
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		w := s[:end]
		s = s[end:]
		for space := true; w != ""; space = false {
			n := len(w)
			if i := strings.IndexByte(w, ':'); colons && i >= 0 {
				n = i + 1
			}
			f.word(w[:n], space)
			w = w[n:]
		}
	}
}

// chars appends s with no space, breaking it anywhere to fill the lines;
// for base64, where whitespace is ignored.
func (f *fieldWriter) chars(s string) {
	for s != "" {
		n := len(s)
		if f.width > 0 {
			if f.width-f.line <= 0 {
				f.newLine()
			}
			n = min(n, f.width-f.line)
		}
		f.b = append(f.b, s[:n]...)
		f.line += n
		f.fresh = false
		s = s[n:]
	}
}

// bytes returns the field with its final CRLF.
func (f *fieldWriter) bytes() []byte {
	return append(f.b, "\r\n"...)
}
