//go:build openssl && cgo

package dkim

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"math/big"

	"github.com/sluice-mail/sluice/gateway/internal/opensslrsa"
)

// RSABackend names what signs with RSA keys in this build: OpenSSL's
// libcrypto, through package opensslrsa.
func RSABackend() string { return "OpenSSL libcrypto (" + opensslrsa.Version() + ")" }

// rsaSigner returns the signer of an RSA key, made once when the key is
// loaded: the key in OpenSSL's memory, read from der (PKCS#8 or PKCS#1).
// key is only used for what it is when der is nil (a generated key). The
// caller drops key: its private values are zeroed here.
func rsaSigner(key *rsa.PrivateKey, der []byte) (crypto.Signer, error) {
	defer zeroPrivate(key)
	if der == nil {
		der = x509.MarshalPKCS1PrivateKey(key)
		defer clear(der)
	}
	return opensslrsa.New(der)
}

// zeroPrivate zeroes the private values of k in place, where crypto/x509
// put them: d, the primes, and their CRT values. The copy crypto/rsa makes
// for itself (Precomputed's unexported part) cannot be reached, nor can
// the temporaries of parsing and checking the key; docs/dkim.md says so.
func zeroPrivate(k *rsa.PrivateKey) {
	zero := func(x *big.Int) {
		if x != nil {
			clear(x.Bits()) // the words themselves, not a copy
			x.SetInt64(0)
		}
	}
	zero(k.D)
	for _, p := range k.Primes {
		zero(p)
	}
	zero(k.Precomputed.Dp)
	zero(k.Precomputed.Dq)
	zero(k.Precomputed.Qinv)
	for _, v := range k.Precomputed.CRTValues {
		zero(v.Exp)
		zero(v.Coeff)
		zero(v.R)
	}
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
