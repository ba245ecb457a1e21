package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"hash"
	"sync"
)

// secret is one SRS secret with HMAC-SHA1 states already keyed with it.
// Keying hashes the secret into the inner and outer pads, two allocations
// and two SHA-1 blocks, which was most of the cost of a hash when done
// for every address; a keyed state from the pool only needs a Reset,
// which goes back to the keyed pads and forgets everything written since.
type secret struct {
	macs sync.Pool // of hash.Hash, keyed with the secret
}

func newSecret(key []byte) *secret {
	return &secret{macs: sync.Pool{New: func() any { return hmac.New(sha1.New, key) }}}
}

// hash is the first HashLength characters of the base64 HMAC-SHA1, keyed
// with secret, of the ASCII-lowercased parts fed one after another (no
// delimiter), as libsrs2 and Mail::SRS compute it. Lowercasing lets an
// address survive a relay that changes its case.
func (r *Rewriter) hash(s *secret, parts ...string) string {
	var sum [sha1.Size]byte
	return base64.StdEncoding.EncodeToString(s.mac(sum[:0], parts))[:r.hashLength]
}

// verify reports whether got is a prefix, at least HashLength long, of the
// hash of parts under any secret, ignoring ASCII case as libsrs2 does.
func (r *Rewriter) verify(got string, parts ...string) bool {
	if len(got) < r.hashLength || len(got) > maxHashLength {
		return false
	}
	var buf [28]byte
	var sum [sha1.Size]byte
	for _, s := range r.secrets {
		base64.StdEncoding.Encode(buf[:], s.mac(sum[:0], parts))
		// Constant time on the (already case-folded) bytes, so that
		// response times do not reveal how much of a guess was right.
		if hmac.Equal(lowerASCII(buf[:len(got)]), lowerASCII([]byte(got))) {
			return true
		}
	}
	return false
}

// mac appends to b the HMAC of the lowercased parts.
func (s *secret) mac(b []byte, parts []string) []byte {
	h := s.macs.Get().(hash.Hash)
	defer s.macs.Put(h)
	h.Reset()
	var chunk [128]byte
	for _, p := range parts {
		for len(p) > 0 {
			n := copy(chunk[:], p)
			h.Write(lowerASCII(chunk[:n]))
			p = p[n:]
		}
	}
	return h.Sum(b)
}

// lowerASCII lowercases b in place, ASCII letters only: libsrs2 uses the C
// locale's tolower and Mail::SRS lc() on byte strings, neither of which
// touches UTF-8.
func lowerASCII(b []byte) []byte {
	for i, c := range b {
		b[i] = lowerByte(c)
	}
	return b
}
