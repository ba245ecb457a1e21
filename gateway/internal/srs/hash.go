package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
)

// hash is the first HashLength characters of the base64 HMAC-SHA1, keyed
// with secret, of the ASCII-lowercased parts fed one after another (no
// delimiter), as libsrs2 and Mail::SRS compute it. Lowercasing lets an
// address survive a relay that changes its case.
func (r *Rewriter) hash(secret []byte, parts ...string) string {
	return base64.StdEncoding.EncodeToString(mac(secret, parts))[:r.hashLength]
}

// verify reports whether got is a prefix, at least HashLength long, of the
// hash of parts under any secret, ignoring ASCII case as libsrs2 does.
func (r *Rewriter) verify(got string, parts ...string) bool {
	if len(got) < r.hashLength || len(got) > maxHashLength {
		return false
	}
	var buf [28]byte
	for _, secret := range r.secrets {
		base64.StdEncoding.Encode(buf[:], mac(secret, parts))
		// Constant time on the (already case-folded) bytes, so that
		// response times do not reveal how much of a guess was right.
		if hmac.Equal(lowerASCII(buf[:len(got)]), lowerASCII([]byte(got))) {
			return true
		}
	}
	return false
}

func mac(secret []byte, parts []string) []byte {
	h := hmac.New(sha1.New, secret)
	var chunk [128]byte
	for _, p := range parts {
		for len(p) > 0 {
			n := copy(chunk[:], p)
			h.Write(lowerASCII(chunk[:n]))
			p = p[n:]
		}
	}
	return h.Sum(nil)
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
