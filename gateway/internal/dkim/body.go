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
	bytes  []byte
	sums   [2]bodySum   // relaxed, simple
	hashed atomic.Int32 // passes over the body, for tests
}

// bodySum is one canonical form's hash, in the Body so that making one
// costs a single allocation: most bodies are hashed in one form only.
type bodySum struct {
	once sync.Once
	sum  [sha256.Size]byte
}

// NewBody returns body, not yet hashed.
func NewBody(body []byte) *Body { return &Body{bytes: body} }

// Bytes returns the body as it was given.
func (b *Body) Bytes() []byte { return b.bytes }

// Hash returns the SHA-256 of the whole body in the canonical form canon,
// "relaxed" or "simple" (anything else is simple, as writeCanonBody
// reads it), which the caller must not change. A signature with l=
// hashes a part of the body itself.
func (b *Body) Hash(canon string) []byte {
	s := &b.sums[1]
	if canon == "relaxed" {
		s = &b.sums[0]
	}
	s.once.Do(func() {
		b.hashed.Add(1)
		h := sha256.New()
		writeCanonBody(h, b.bytes, canon)
		h.Sum(s.sum[:0])
	})
	return s.sum[:]
}
