package dkim

import (
	"crypto"
	"io"

	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// Exported access to this package's message parsing and canonicalization for
// package arc. The ARC-Message-Signature and ARC-Seal fields are DKIM
// signatures under other names (RFC 8617 §4.1.2, §4.1.3): they must split,
// select and canonicalize exactly as DKIM does, so arc uses this code rather
// than a copy of it.

// HeaderField is one header field exactly as it appears in a message.
type HeaderField = headerField

// Name returns the field name, without surrounding whitespace.
func (f headerField) Name() string { return f.name }

// Raw returns the field as it appears in the message: name, colon, value,
// folding and final line break included.
func (f headerField) Raw() []byte { return f.raw }

// SplitMessage returns the header fields and the body of msg. The fields are
// windows on msg, not copies.
func SplitMessage(msg []byte) ([]HeaderField, []byte) { return splitMessage(msg) }

// FieldsOf returns the fields of a parsed header as SplitMessage would
// split and name them, without parsing it again: windows on its bytes.
func FieldsOf(h *message.Header) []HeaderField { return fieldsOf(h) }

// EqualName reports whether a field's name is lower, a lower-case name,
// as SelectFields matches names: in ASCII case only.
func EqualName(name, lower string) bool {
	var buf [64]byte
	return string(message.AppendLower(buf[:0], name)) == lower
}

// SelectFields returns the fields that the names of an h= list (lower case)
// pick, in list order, chosen bottom-up as RFC 6376 §5.4.2 says.
func SelectFields(fields []HeaderField, names []string) []HeaderField {
	return selectFields(fields, names, -1)
}

// AppendSignedHeaders appends the relaxed canonical form of the fields that
// names (lower case) picks, as SelectFields chooses them.
func AppendSignedHeaders(dst []byte, fields []HeaderField, names []string) []byte {
	return appendSignedHeaders(dst, fields, names)
}

// AppendRelaxedHeader appends the relaxed canonical form (RFC 6376 §3.4.2)
// of one raw header field, ending in CRLF.
func AppendRelaxedHeader(dst, raw []byte) []byte { return appendRelaxedHeader(dst, raw) }

// AppendCanonHeader appends one raw header field in the canonical form
// canon, "simple" or "relaxed" (RFC 6376 §3.4.1, §3.4.2), ending in CRLF.
func AppendCanonHeader(dst, raw []byte, canon string) []byte {
	return appendCanonHeader(dst, raw, canon)
}

// WriteRelaxedBody writes the relaxed canonical form (RFC 6376 §3.4.4) of a
// message body to w.
func WriteRelaxedBody(w io.Writer, body []byte) { writeRelaxedBody(w, body) }

// WriteCanonBody writes a message body to w in the canonical form canon,
// "simple" or "relaxed" (RFC 6376 §3.4.3, §3.4.4).
func WriteCanonBody(w io.Writer, body []byte, canon string) { writeCanonBody(w, body, canon) }

// Tag is one tag=value of a signature field.
type Tag = tag

// SignField returns a complete signature field, "name: tags" ending in CRLF:
// the tags in the order given, each but the last followed by ";", and the
// b= tag (which must be among them, with an empty value) holding the
// signature by key of signedHeaders followed by the field itself with an
// empty b=, relaxed (RFC 6376 §3.7). hash is the option for key.Sign:
// crypto.SHA256 for RSA, 0 for Ed25519 (RFC 8463 §3). b= and the tag after
// it start new lines; lines are folded before width columns, and width 0
// writes one line.
func SignField(name string, tags []Tag, signedHeaders []byte, key crypto.Signer, hash crypto.Hash, width int) ([]byte, error) {
	return signField(name, tags, signedHeaders, key, hash, width)
}

// FoldField returns the header field "name: text" ending in CRLF, each run
// of spaces and tabs in text written as one space or a fold before width
// columns (0: no folds).
func FoldField(name, text string, width int) []byte { return foldField(name, text, width) }

// KeyKind returns the k= name of a public key ("rsa" or "ed25519"), or why
// it cannot sign (wrong type, RSA size outside RFC 8301's bounds).
func KeyKind(pub crypto.PublicKey) (string, error) { return keyKind(pub) }

// IsDNSName reports whether s is a plausible ASCII domain name or selector.
func IsDNSName(s string) bool { return isDNSName(s) }

// IsFieldName reports whether s is a header field name (RFC 5322 §3.6.8).
func IsFieldName(s string) bool { return isFieldName(s) }
