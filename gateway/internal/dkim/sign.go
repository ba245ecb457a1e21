// Package dkim signs forwarded mail with DKIM (RFC 6376) and handles the
// signing keys: RSA (rsa-sha256) and Ed25519 (ed25519-sha256, RFC 8463).
package dkim

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The signer is written against RFC 6376 rather than on go-msgauth's
// dkim.Signer (which the tests use as an independent verifier), because that
// signer cannot do what Sluice needs: it reads the time from a package
// variable (so t= cannot follow SignerConfig.Now), writes h= as one unbroken
// word (an oversigned list runs far past 78 columns), and hashes the body
// again for every key.

// Key is one signing key and the selector its public key is published under,
// at <Selector>._domainkey.<Domain>.
type Key struct {
	Selector string
	Signer   crypto.Signer // *rsa.PrivateKey or ed25519.PrivateKey
}

// SignerConfig configures a Signer.
type SignerConfig struct {
	Domain  string        // the d= domain, whose DNS holds the public keys
	Keys    []Key         // one signature per key, in this order
	Headers []string      // header field names to sign; nil = DefaultHeaders
	Expire  time.Duration // how long signatures stay valid (x=); 0 = no x= tag
	Now     func() time.Time
}

// DefaultHeaders is the list of header fields signed when
// SignerConfig.Headers is nil, chosen following RFC 6376 §5.4:
//
//   - The fields that carry what the recipient reads and replies to, which
//     RFC 5322 allows only once (From, Sender, Reply-To, To, Cc, Subject,
//     Date, Message-ID, In-Reply-To, References) and the MIME fields that
//     decide how the body is shown (MIME-Version, Content-Type,
//     Content-Transfer-Encoding), are listed twice. A name listed more times
//     than the field is present signs its absence (§5.4.2), so anyone adding
//     a second From or Subject below or above ours breaks the signature.
//   - Fields §5.4.1 recommends that may be absent or come from a list
//     (Resent-*, List-*, and List-Unsubscribe-Post, which RFC 8058 requires
//     to be signed) are listed once: present, they are signed; absent, they
//     cannot be added unnoticed.
//   - Trace and transport fields (Received, Return-Path, DKIM-Signature,
//     Authentication-Results, ARC-*) are left out: relays legitimately add
//     them after us.
var DefaultHeaders = []string{
	"From", "From",
	"Sender", "Sender",
	"Reply-To", "Reply-To",
	"To", "To",
	"Cc", "Cc",
	"Subject", "Subject",
	"Date", "Date",
	"Message-ID", "Message-ID",
	"In-Reply-To", "In-Reply-To",
	"References", "References",
	"MIME-Version", "MIME-Version",
	"Content-Type", "Content-Type",
	"Content-Transfer-Encoding", "Content-Transfer-Encoding",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive",
}

// Signer makes the DKIM-Signature header fields for messages from one domain.
// It is safe for concurrent use.
type Signer struct {
	domain  string
	keys    []signingKey
	headers []string // lower case, in h= order
	expire  time.Duration
	now     func() time.Time
}

type signingKey struct {
	selector  string
	signer    crypto.Signer
	algorithm string // the a= value
	// hash is the option for crypto.Signer.Sign. RSA signs the SHA-256
	// digest as PKCS#1 v1.5; Ed25519 signs the same digest as a plain
	// message (RFC 8463 §3), which crypto/ed25519 wants as hash 0.
	hash crypto.Hash
}

// NewSigner checks c and returns a Signer for it.
func NewSigner(c SignerConfig) (*Signer, error) {
	if !isDNSName(c.Domain) {
		return nil, fmt.Errorf("dkim: domain %q is not a DNS name", c.Domain)
	}
	if len(c.Keys) == 0 {
		return nil, errors.New("dkim: no signing keys")
	}
	if c.Expire < 0 || (c.Expire > 0 && c.Expire < time.Second) {
		return nil, fmt.Errorf("dkim: expiry %v is not 0 or at least 1s", c.Expire)
	}
	s := &Signer{domain: c.Domain, expire: c.Expire, now: c.Now}
	if s.now == nil {
		s.now = time.Now
	}
	for _, k := range c.Keys {
		if !isDNSName(k.Selector) {
			return nil, fmt.Errorf("dkim: selector %q is not a DNS label", k.Selector)
		}
		if k.Signer == nil {
			return nil, fmt.Errorf("dkim: selector %q has no key", k.Selector)
		}
		kind, err := keyKind(k.Signer.Public())
		if err != nil {
			return nil, fmt.Errorf("dkim: selector %q: %w", k.Selector, err)
		}
		sk := signingKey{selector: k.Selector, signer: k.Signer, algorithm: kind + "-sha256"}
		if kind == "rsa" {
			sk.hash = crypto.SHA256
		}
		s.keys = append(s.keys, sk)
	}
	headers := c.Headers
	if headers == nil {
		headers = DefaultHeaders
	}
	from := false
	for _, h := range headers {
		if !isFieldName(h) {
			return nil, fmt.Errorf("dkim: %q is not a header field name", h)
		}
		h = strings.ToLower(h)
		from = from || h == "from"
		s.headers = append(s.headers, h)
	}
	if !from {
		// RFC 6376 §5.4: the From field MUST be signed.
		return nil, errors.New("dkim: the header list must include From")
	}
	return s, nil
}

// Sign returns the DKIM-Signature header fields to prepend to msg, one per
// key in key order, each ending in CRLF and folded into lines shorter than
// 78 characters. msg is a whole message (header, empty line, body) with CRLF
// line endings; it is read, never changed.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	fields, body := splitMessage(msg)
	bh := bodyHash(body)
	signed := appendSignedHeaders(nil, fields, s.headers)
	now := s.now()
	var out []byte
	for _, k := range s.keys {
		var err error
		out, err = appendSignature(out, s.tags(k, now, bh), signed, k)
		if err != nil {
			return nil, fmt.Errorf("dkim: signing with selector %q: %w", k.selector, err)
		}
	}
	return out, nil
}

// tag is one tag=value pair of a DKIM-Signature field.
type tag struct{ name, value string }

func (s *Signer) tags(k signingKey, now time.Time, bh string) []tag {
	tags := []tag{
		{"v", "1"},
		{"a", k.algorithm},
		{"c", "relaxed/relaxed"},
		{"d", s.domain},
		{"s", k.selector},
		{"t", strconv.FormatInt(now.Unix(), 10)},
	}
	if s.expire > 0 {
		tags = append(tags, tag{"x", strconv.FormatInt(now.Add(s.expire).Unix(), 10)})
	}
	return append(tags,
		tag{"h", strings.Join(s.headers, ":")},
		tag{"bh", bh},
	)
}

// appendSignature appends a complete DKIM-Signature field with the given
// tags, signed over signedHeaders (the canonical header fields named in h=)
// followed by the field itself with an empty b= (RFC 6376 §3.7).
func appendSignature(dst []byte, tags []tag, signedHeaders []byte, k signingKey) ([]byte, error) {
	f := newFolder("DKIM-Signature:")
	for _, t := range tags {
		f.text(t.name + "=" + t.value + ";")
	}
	// b= starts its own line so that the text a verifier hashes (this
	// field with the b= value removed) is exactly the text signed here.
	f.fold()
	f.word("b=", false)

	h := sha256.New()
	h.Write(signedHeaders)
	canon := appendRelaxedHeader(nil, f.b)
	h.Write(canon[:len(canon)-len("\r\n")]) // the signature field is hashed without its CRLF
	sig, err := k.signer.Sign(rand.Reader, h.Sum(nil), k.hash)
	if err != nil {
		return nil, err
	}
	f.chars(base64.StdEncoding.EncodeToString(sig))
	dst = append(dst, f.b...)
	return append(dst, "\r\n"...), nil
}

// maxLine is the longest line folder writes, CRLF not counted; RFC 5322
// §2.1.1 asks for no more than 78.
const maxLine = 76

// folder writes a header field, breaking lines with CRLF SP. The field is
// signed as written (less the b= value), so a break may go anywhere the tag
// grammar of RFC 6376 §3.2 allows whitespace: between tags, around the
// colons of h=, inside base64.
type folder struct {
	b    []byte
	line int // length of the current line
}

func newFolder(name string) *folder {
	return &folder{b: []byte(name), line: len(name)}
}

func (f *folder) fold() {
	f.b = append(f.b, "\r\n "...)
	f.line = 1
}

// word appends w, after a space if space is set, on a new line if it does
// not fit on this one (unless the line holds nothing yet).
func (f *folder) word(w string, space bool) {
	n := len(w)
	if space {
		n++
	}
	if f.line+n > maxLine && f.line > 1 {
		f.fold()
	} else if space {
		f.b = append(f.b, ' ')
		f.line++
	}
	f.b = append(f.b, w...)
	f.line += len(w)
}

// text appends text after a space, allowing breaks at its spaces and after
// each colon (so a long h= list folds between names).
func (f *folder) text(text string) {
	for text != "" {
		w, rest, _ := strings.Cut(text, " ")
		text = rest
		space := true
		for w != "" {
			n := strings.IndexByte(w, ':') + 1
			if n == 0 {
				n = len(w)
			}
			f.word(w[:n], space)
			space = false
			w = w[n:]
		}
	}
}

// chars appends s with no space, breaking it anywhere to fill each line;
// used for base64, where whitespace is ignored.
func (f *folder) chars(s string) {
	for s != "" {
		room := maxLine - f.line
		if room <= 0 {
			f.fold()
			continue
		}
		n := min(room, len(s))
		f.b = append(f.b, s[:n]...)
		f.line += n
		s = s[n:]
	}
}

// isDNSName reports whether s is a plausible ASCII domain name or selector:
// dot-separated labels of letters, digits, '-' and '_'.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// isFieldName reports whether s is a header field name (RFC 5322 §3.6.8).
func isFieldName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}
