package dkim

import (
	"crypto"
	"crypto/rsa"
	"sync"
)

// maxCachedKeys bounds a KeyCache. Mail from a domain carries the same one
// or two keys for months, so a few hundred senders' keys cover most mail.
const maxCachedKeys = 1000

// RSAKey is an RSA public key read from a key record, ready to verify
// with: in a build with the tag openssl it is also loaded into OpenSSL,
// which verifies with it (rsa_openssl.go).
type RSAKey struct {
	*rsa.PublicKey
	verifier rsaVerifier
}

// rsaVerifier checks PKCS#1 v1.5 signatures of SHA-256 digests.
type rsaVerifier interface {
	Verify(digest, sig []byte) error
}

// newRSAKey makes pub ready to verify with.
func newRSAKey(pub *rsa.PublicKey) *RSAKey { return &RSAKey{pub, rsaVerifierOf(pub)} }

// Verify reports whether sig is the PKCS#1 v1.5 signature of a SHA-256
// digest made with the key.
func (k *RSAKey) Verify(digest, sig []byte) bool { return k.verifier.Verify(digest, sig) == nil }

// goVerifier verifies with crypto/rsa, which sets the key up anew for
// every signature (about a third of the time a verification takes).
type goVerifier struct{ pub *rsa.PublicKey }

func (v goVerifier) Verify(digest, sig []byte) error {
	return rsa.VerifyPKCS1v15(v.pub, crypto.SHA256, digest, sig)
}

// KeyCache keeps RSA public keys parsed from key records, by their DER
// encoding, so that a key seen again is not parsed, nor loaded into
// OpenSSL, again: every message from a domain names the same keys, and
// parsing one costs a fifth of verifying with it. What it keeps is what the
// bytes mean, so it never goes stale; DNS decides which bytes a lookup
// returns, and a record whose TTL has run out is looked up again. It is
// safe for concurrent use.
type KeyCache struct {
	mu   sync.Mutex
	keys map[string]*RSAKey
}

// NewKeyCache returns an empty cache.
func NewKeyCache() *KeyCache { return &KeyCache{keys: map[string]*RSAKey{}} }

// RSA returns the key that parse makes of der, calling parse only for an
// encoding not parsed successfully before. A nil cache always parses, and
// its keys verify with crypto/rsa: loading a key into OpenSSL costs more
// than it saves on a signature or two.
func (c *KeyCache) RSA(der []byte, parse func([]byte) (*rsa.PublicKey, error)) (*RSAKey, error) {
	if c == nil {
		pub, err := parse(der)
		if err != nil {
			return nil, err
		}
		return &RSAKey{pub, goVerifier{pub}}, nil
	}
	c.mu.Lock()
	key, ok := c.keys[string(der)]
	c.mu.Unlock()
	if ok {
		return key, nil
	}
	pub, err := parse(der)
	if err != nil {
		return nil, err
	}
	key = newRSAKey(pub)
	c.mu.Lock()
	if len(c.keys) >= maxCachedKeys {
		clear(c.keys) // simpler than tracking use, and rare
	}
	c.keys[string(der)] = key
	c.mu.Unlock()
	return key, nil
}
