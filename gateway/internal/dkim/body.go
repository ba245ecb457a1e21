package dkim

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
)

// Body is a message body with the SHA-256 of its canonical forms, each
// computed the first time something asks and kept: a forwarded message's
// body is hashed relaxed by the DKIM and ARC verifications, our DKIM
// signature and our ARC-Message-Signature, and one pass serves the four.
// It is made once per message, next to its parsed header, and is safe
// for the verifications running at the same time. The bytes must not
// change while it is in use.
type Body struct {
	bytes           []byte
	relaxed, simple func() []byte
	hashed          atomic.Int32 // passes over the body, for tests
}

// NewBody returns body, not yet hashed.
func NewBody(body []byte) *Body {
	b := &Body{bytes: body}
	b.relaxed = sync.OnceValue(func() []byte { return b.sum("relaxed") })
	b.simple = sync.OnceValue(func() []byte { return b.sum("simple") })
	return b
}

// Bytes returns the body as it was given.
func (b *Body) Bytes() []byte { return b.bytes }

// Hash returns the SHA-256 of the whole body in the canonical form canon,
// "relaxed" or "simple" (anything else is simple, as writeCanonBody
// reads it). A signature with l= hashes a part of it itself.
func (b *Body) Hash(canon string) []byte {
	if canon == "relaxed" {
		return b.relaxed()
	}
	return b.simple()
}

func (b *Body) sum(canon string) []byte {
	b.hashed.Add(1)
	h := sha256.New()
	writeCanonBody(h, b.bytes, canon)
	return h.Sum(nil)
}
