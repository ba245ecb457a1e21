package dkim

import (
	"crypto/rsa"
	"sync"
)

// maxCachedKeys bounds a KeyCache. Mail from a domain carries the same one
// or two keys for months, so a few hundred senders' keys cover most mail.
const maxCachedKeys = 1000

// KeyCache keeps RSA public keys parsed from key records, by their DER
// encoding, so that a key seen again is not parsed again: every message
// from a domain names the same keys, and parsing one costs a fifth of
// verifying with it. What it keeps is what the bytes mean, so it never goes
// stale; DNS decides which bytes a lookup returns. It is safe for
// concurrent use.
type KeyCache struct {
	mu   sync.Mutex
	keys map[string]*rsa.PublicKey
}

// NewKeyCache returns an empty cache.
func NewKeyCache() *KeyCache { return &KeyCache{keys: map[string]*rsa.PublicKey{}} }

// RSA returns the key that parse makes of der, calling parse only for an
// encoding not parsed successfully before. A nil cache always parses.
func (c *KeyCache) RSA(der []byte, parse func([]byte) (*rsa.PublicKey, error)) (*rsa.PublicKey, error) {
	if c == nil {
		return parse(der)
	}
	c.mu.Lock()
	key, ok := c.keys[string(der)]
	c.mu.Unlock()
	if ok {
		return key, nil
	}
	key, err := parse(der)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.keys) >= maxCachedKeys {
		clear(c.keys) // simpler than tracking use, and rare
	}
	c.keys[string(der)] = key
	c.mu.Unlock()
	return key, nil
}
