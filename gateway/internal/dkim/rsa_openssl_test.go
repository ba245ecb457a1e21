//go:build openssl && cgo

package dkim

import (
	"crypto"
	"crypto/ed25519"
	"reflect"
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
