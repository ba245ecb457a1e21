package buildinfo

import (
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
)

// Read says what makes the build's RSA signatures, as dkim does: the
// metric and the startup log show it.
func TestReadRSASigner(t *testing.T) {
	if got, want := Read().RSASigner, dkim.RSABackend(); got != want || got == "" {
		t.Errorf("RSASigner = %q, want %q", got, want)
	}
}
