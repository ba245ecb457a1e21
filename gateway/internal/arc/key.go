package arc

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
)

// minRSABits: RFC 8301 §3.2, verifiers MUST NOT accept smaller RSA keys.
const minRSABits = 1024

// publicKey is a verification key from DNS.
type publicKey struct {
	kind string // "rsa" or "ed25519", as in k= and in a= before "-sha256"
	key  crypto.PublicKey
}

// keys looks up public keys, each name once per message: a chain of n sets
// may name the same key 2n times.
type keys struct {
	lookup TXTLookup
	cache  map[string]keyResult
	parsed *dkim.KeyCache // RSA keys parsed before, across messages
}

type keyResult struct {
	key publicKey
	err error
}

func (k *keys) get(ctx context.Context, selector, domain string) (publicKey, error) {
	name := selector + "._domainkey." + domain
	if r, ok := k.cache[name]; ok {
		return r.key, r.err
	}
	key, err := k.fetch(ctx, name)
	if k.cache == nil {
		k.cache = map[string]keyResult{}
	}
	k.cache[name] = keyResult{key, err}
	return key, err
}

func (k *keys) fetch(ctx context.Context, name string) (publicKey, error) {
	if k.lookup == nil {
		return publicKey{}, errors.New("no DNS lookup configured")
	}
	records, err := k.lookup(ctx, name)
	if err != nil {
		// RFC 8617 §5.2.1: every error, DNS ones included, is a failure.
		return publicKey{}, fmt.Errorf("key %s: %w", name, err)
	}
	if len(records) == 0 {
		return publicKey{}, fmt.Errorf("key %s: no TXT record", name)
	}
	// RFC 6376 §3.6.2.2: with several records the result is undefined; use
	// the first that is a key.
	var firstErr error
	for _, r := range records {
		key, err := readKeyRecord(r, k.parsed)
		if err == nil {
			return key, nil
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("key %s: %w", name, err)
		}
	}
	return publicKey{}, firstErr
}

// parseKeyRecord parses a DKIM key record (RFC 6376 §3.6.1, RFC 8463 §4).
func parseKeyRecord(record string) (publicKey, error) { return readKeyRecord(record, nil) }

// readKeyRecord parses a DKIM key record, taking its RSA key from parsed
// if it was parsed before.
func readKeyRecord(record string, parsed *dkim.KeyCache) (publicKey, error) {
	t, err := parseTags(record)
	if err != nil {
		return publicKey{}, fmt.Errorf("record does not parse: %v", err)
	}
	if v, ok := t["v"]; ok && v != "DKIM1" {
		return publicKey{}, fmt.Errorf("record has v=%.20q, want DKIM1", v)
	}
	if h, ok := t["h"]; ok && !listHas(h, "sha256") {
		return publicKey{}, fmt.Errorf("record allows hashes %.40q, not sha256", h)
	}
	if s, ok := t["s"]; ok && !listHas(s, "email") && !listHas(s, "*") {
		return publicKey{}, fmt.Errorf("record is for services %.40q, not email", s)
	}
	p, ok := t["p"]
	if !ok {
		return publicKey{}, errors.New("record has no p=")
	}
	if removeFWS(p) == "" {
		return publicKey{}, errors.New("key revoked (empty p=)")
	}
	der, err := decodeBase64(p)
	if err != nil {
		return publicKey{}, fmt.Errorf("p= is not base64: %v", err)
	}
	kind, ok := t["k"]
	if !ok {
		kind = "rsa"
	}
	switch kind {
	case "rsa":
		key, err := parsed.RSA(der, parseRSAKey)
		if err != nil {
			return publicKey{}, err
		}
		return publicKey{kind, key}, nil
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return publicKey{}, fmt.Errorf("Ed25519 key has %d bytes, want %d", len(der), ed25519.PublicKeySize)
		}
		return publicKey{kind, ed25519.PublicKey(der)}, nil
	default:
		return publicKey{}, fmt.Errorf("unknown key type k=%.20q", kind)
	}
}

// parseRSAKey reads p= as a SubjectPublicKeyInfo, as RFC 6376 says, or as a
// bare PKCS#1 RSAPublicKey, which some publishers use.
func parseRSAKey(der []byte) (*rsa.PublicKey, error) {
	var key *rsa.PublicKey
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("k=rsa but p= holds a %T", pub)
		}
		key = k
	} else if key, err = x509.ParsePKCS1PublicKey(der); err != nil {
		return nil, errors.New("p= is not an RSA public key")
	}
	if bits := key.N.BitLen(); bits < minRSABits {
		return nil, fmt.Errorf("RSA key has %d bits, fewer than %d (RFC 8301)", bits, minRSABits)
	}
	return key, nil
}

// listHas reports whether a colon-separated tag value lists item.
func listHas(list, item string) bool {
	for _, x := range strings.Split(list, ":") {
		if trimFWS(x) == item {
			return true
		}
	}
	return false
}
