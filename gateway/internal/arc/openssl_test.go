//go:build openssl && cgo

package arc

import (
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/opensslrsa"
)

// In a build with the tag openssl the tests' RSA key, loaded as the gateway
// loads its keys, is OpenSSL's: TestDkimpyVerifies then checks sets sealed
// by OpenSSL.
func TestSealsWithOpenSSL(t *testing.T) {
	if k, ok := rsaKey().(*opensslrsa.Key); !ok {
		t.Fatalf("the RSA key is a %T, want an *opensslrsa.Key", k)
	}
}
