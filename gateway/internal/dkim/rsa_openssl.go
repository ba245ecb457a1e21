//go:build openssl && cgo

package dkim

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"

	"github.com/sluice-mail/sluice/gateway/internal/opensslrsa"
)

// RSABackend names what signs with RSA keys in this build: OpenSSL's
// libcrypto, through package opensslrsa.
func RSABackend() string { return "OpenSSL libcrypto (" + opensslrsa.Version() + ")" }

// rsaSigner returns the signer of an RSA key, made once when the key is
// loaded: the key in OpenSSL's memory, read from der (PKCS#8 or PKCS#1).
// key is only used for what it is when der is nil (a generated key).
func rsaSigner(key *rsa.PrivateKey, der []byte) (crypto.Signer, error) {
	if der == nil {
		der = x509.MarshalPKCS1PrivateKey(key)
		defer clear(der)
	}
	return opensslrsa.New(der)
}

// rsaVerifierOf returns what verifies with pub: the key loaded into
// OpenSSL, which sets it up once rather than per signature; or, for a key
// OpenSSL does not take (more than 16384 bits, or one crypto/rsa refuses
// too), crypto/rsa, so that each build gives the same results.
func rsaVerifierOf(pub *rsa.PublicKey) rsaVerifier {
	if k, err := opensslrsa.NewPublic(pub); err == nil {
		return k
	}
	return goVerifier{pub}
}
