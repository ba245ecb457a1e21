package dkim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// RSA key sizes accepted. RFC 8301 §3.2: signers MUST use at least 1024 bits
// (and SHOULD use 2048), and verifiers need not handle more than 4096.
const (
	minRSABits     = 1024
	maxRSABits     = 4096
	defaultRSABits = 2048
)

// LoadKey reads a PEM private key: PKCS#8 ("PRIVATE KEY", RSA or Ed25519) or
// PKCS#1 ("RSA PRIVATE KEY"). Errors name the file and say what is wrong.
func LoadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim: reading key: %w", err)
	}
	k, err := parseKey(data)
	clear(data) // the key is parsed: no copy of it stays behind in Go memory
	if err != nil {
		return nil, fmt.Errorf("dkim: key file %s: %w", path, err)
	}
	return k, nil
}

// ParseKey reads a PEM private key as LoadKey does, from memory. Like
// LoadKey with the file's bytes, it zeroes the RSA key's DER in pemData
// once the signer holds the key: pemData cannot be parsed again.
func ParseKey(pemData []byte) (crypto.Signer, error) {
	k, err := parseKey(pemData)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return k, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New(`no PEM block found; want "PRIVATE KEY" (PKCS#8) or "RSA PRIVATE KEY" (PKCS#1)`)
	}
	if _, ok := block.Headers["Proc-Type"]; ok || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("the key is encrypted; store it unencrypted, readable only by sluice")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf(`PEM block is %q; want "PRIVATE KEY" (PKCS#8) or "RSA PRIVATE KEY" (PKCS#1)`, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s block does not parse: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	if _, err := keyKind(signer.Public()); err != nil {
		return nil, err
	}
	if k, ok := key.(*rsa.PrivateKey); ok {
		// Made once here, when the key is loaded, rather than per
		// signature: the OpenSSL backend copies the key into its own
		// memory, after which the DER is zeroed.
		signer, err = rsaSigner(k, block.Bytes)
		clear(block.Bytes)
		if err != nil {
			return nil, err
		}
	}
	return signer, nil
}

// keyKind returns the DKIM k= name of a public key ("rsa" or "ed25519"), or
// why the key cannot sign DKIM.
func keyKind(pub crypto.PublicKey) (string, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		bits := pub.N.BitLen()
		if bits < minRSABits {
			return "", fmt.Errorf("RSA key has %d bits; DKIM requires at least %d (RFC 8301), use %d", bits, minRSABits, defaultRSABits)
		}
		if bits > maxRSABits {
			return "", fmt.Errorf("RSA key has %d bits; verifiers need not accept more than %d (RFC 8301)", bits, maxRSABits)
		}
		return "rsa", nil
	case ed25519.PublicKey:
		return "ed25519", nil
	case *ecdsa.PublicKey:
		return "", errors.New("ECDSA keys cannot sign DKIM; use RSA or Ed25519")
	default:
		return "", fmt.Errorf("unsupported key type %T; use RSA or Ed25519", pub)
	}
}

// GenerateKey makes a new signing key. algorithm is "rsa" (bits 0 means
// 2048) or "ed25519" (bits is ignored: the size is fixed).
func GenerateKey(algorithm string, bits int) (crypto.Signer, error) {
	switch strings.ToLower(algorithm) {
	case "rsa":
		if bits == 0 {
			bits = defaultRSABits
		}
		if bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("dkim: RSA key size %d is outside %d..%d bits", bits, minRSABits, maxRSABits)
		}
		return rsa.GenerateKey(rand.Reader, bits)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	default:
		return nil, fmt.Errorf("dkim: unknown key algorithm %q; want rsa or ed25519", algorithm)
	}
}

// MarshalKey encodes a private key as PKCS#8 PEM, the form LoadKey reads.
func MarshalKey(k crypto.Signer) ([]byte, error) {
	if _, err := keyKind(k.Public()); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// TXTRecord returns the DNS TXT record that publishes k's public key (RFC 6376
// §3.6.1): for RSA the DER SubjectPublicKeyInfo, as `openssl rsa -pubout`
// writes it; for Ed25519 the raw 32-byte key (RFC 8463 §4).
func TXTRecord(k crypto.Signer) (string, error) {
	pub := k.Public()
	kind, err := keyKind(pub)
	if err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	var p []byte
	if kind == "rsa" {
		p, err = x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("dkim: %w", err)
		}
	} else {
		p = pub.(ed25519.PublicKey)
	}
	return "v=DKIM1; k=" + kind + "; p=" + base64.StdEncoding.EncodeToString(p), nil
}

// PublicKey returns the public key a key record (TXTRecord's form, or
// anyone's) publishes, read as verification reads it, so that a published
// record can be compared with a private key: both have an Equal method.
func PublicKey(record string) (crypto.PublicKey, error) {
	k, err := parseKeyRecord(record)
	if err != nil {
		return nil, err
	}
	if k.rsa != nil {
		return k.rsa.PublicKey, nil
	}
	return k.ed25519, nil
}
