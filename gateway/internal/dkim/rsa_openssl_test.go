//go:build openssl && cgo

package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/opensslrsa"
)

// TestLoadKeyUsesOpenSSL checks that in a build with the tag openssl an RSA
// key is loaded into OpenSSL, PKCS#8 or PKCS#1, and an Ed25519 key stays
// Go's; and that the OpenSSL-backed Signer writes the very fields the
// crypto/rsa one does.
func TestLoadKeyUsesOpenSSL(t *testing.T) {
	for _, path := range []string{"testdata/rsa2048-pkcs8.pem", "testdata/rsa2048-pkcs1.pem"} {
		k, err := LoadKey(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := k.(*opensslrsa.Key); !ok {
			t.Errorf("LoadKey(%s) gave a %T, want an *opensslrsa.Key", path, k)
		}
	}
	if k := testKeys(t)[1].Signer; reflect.TypeOf(k) != reflect.TypeFor[ed25519.PrivateKey]() {
		t.Errorf("the Ed25519 key loaded as a %T, want Go's ed25519.PrivateKey", k)
	}

	// The same key parsed by crypto/x509 alone, signing with crypto/rsa.
	goKey := loadPKCS1(t, "testdata/rsa2048-pkcs1.pem")
	osslKey, err := LoadKey("testdata/rsa2048-pkcs1.pem")
	if err != nil {
		t.Fatal(err)
	}
	msg := benchMessage()
	sign := func(k crypto.Signer) string {
		s, err := NewSigner(SignerConfig{Domain: testDomain, Keys: []Key{{Selector: "rsa1", Signer: k}},
			Now: func() time.Time { return time.Unix(1000000000, 0) }})
		if err != nil {
			t.Fatal(err)
		}
		sig, err := s.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		return string(sig)
	}
	if got, want := sign(osslKey), sign(goKey); got != want {
		t.Errorf("OpenSSL-backed signature:\n%s\ncrypto/rsa's:\n%s", got, want)
	}
}

// TestVerifyUsesOpenSSL checks that in a build with the tag openssl a key
// from a key record is loaded into OpenSSL, once, and verifies there; and
// that a key OpenSSL does not take is verified by crypto/rsa instead.
func TestVerifyUsesOpenSSL(t *testing.T) {
	keys := testKeys(t)
	der, err := x509.MarshalPKIXPublicKey(keys[0].Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	cache := NewKeyCache()
	k, err := cache.RSA(der, parseRSAKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.verifier.(*opensslrsa.PublicKey); !ok {
		t.Errorf("a key record's key verifies with a %T, want an *opensslrsa.PublicKey", k.verifier)
	}
	digest := sha256.Sum256([]byte("x"))
	sig, err := keys[0].Signer.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Verify(digest[:], sig) || k.Verify(digest[:], sig[1:]) {
		t.Error("the OpenSSL key does not tell a signature from a cut one")
	}

	// More than the 16384 bits OpenSSL verifies with.
	n := new(big.Int).Lsh(big.NewInt(1), 16400)
	n.Add(n, big.NewInt(1))
	if v := newRSAKey(&rsa.PublicKey{N: n, E: 65537}).verifier; reflect.TypeOf(v) != reflect.TypeFor[goVerifier]() {
		t.Errorf("a 16401-bit key verifies with a %T, want crypto/rsa", v)
	}
}

// TestLoadZeroesGoKey checks that once OpenSSL holds a key, the private
// values crypto/x509 parsed into Go memory are zeroed, and that OpenSSL's
// copy still signs as the key did.
func TestLoadZeroesGoKey(t *testing.T) {
	data, err := os.ReadFile("testdata/rsa2048-pkcs1.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	goKey, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	want, err := goKey.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	// What the Go key's values are kept in: each must hold only zeroes.
	values := []*big.Int{goKey.D, goKey.Primes[0], goKey.Primes[1], goKey.Precomputed.Dp, goKey.Precomputed.Dq, goKey.Precomputed.Qinv}
	words := make([][]big.Word, len(values))
	for i, v := range values {
		words[i] = v.Bits()
	}
	signer, err := rsaSigner(goKey, block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range words {
		if slices.ContainsFunc(w, func(x big.Word) bool { return x != 0 }) || values[i].Sign() != 0 {
			t.Errorf("private value %d of the Go key is not zeroed", i)
		}
	}
	if got, err := signer.Sign(nil, digest[:], crypto.SHA256); err != nil || !bytes.Equal(got, want) {
		t.Errorf("OpenSSL's key signs differently after the Go key was zeroed (%v)", err)
	}
}
