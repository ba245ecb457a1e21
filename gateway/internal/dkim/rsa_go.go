//go:build !openssl || !cgo

package dkim

import (
	"crypto"
	"crypto/rsa"
)

// RSABackend names what signs with RSA keys in this build: crypto/rsa here;
// OpenSSL's libcrypto in a build with the tag openssl (rsa_openssl.go).
func RSABackend() string { return "Go crypto/rsa" }

// rsaSigner returns the signer of an RSA key, made once when the key is
// loaded; der is the key's DER (PKCS#8 or PKCS#1), which the OpenSSL
// backend reads. This build signs with key itself.
func rsaSigner(key *rsa.PrivateKey, der []byte) (crypto.Signer, error) { return key, nil }

// rsaVerifierOf returns what verifies with pub: crypto/rsa in this build.
func rsaVerifierOf(pub *rsa.PublicKey) rsaVerifier { return goVerifier{pub} }
