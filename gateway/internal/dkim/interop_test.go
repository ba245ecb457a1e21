package dkim

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
)

// dkimpyVerify runs dkimpy (Debian's python3-dkim) on msg and returns its
// verdict per signature, top one first.
func dkimpyVerify(t *testing.T, msg string, records map[string]string) []bool {
	t.Helper()
	return dkimpy.Check(t, []byte(msg), records).DKIM
}

func TestDkimpyVerifies(t *testing.T) {
	keys := testKeys(t)
	records := txtRecords(t, testDomain, keys)
	signed := signMessage(t, newTestSigner(t, keys), testMessage)

	if got := dkimpyVerify(t, signed, records); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("dkimpy on the signed message: %v, want both signatures verified", got)
	}
	// The same check on a changed body must fail, or the one above proves
	// nothing.
	changed := strings.Replace(signed, "noon", "one", 1)
	if got := dkimpyVerify(t, changed, records); !slices.Equal(got, []bool{false, false}) {
		t.Errorf("dkimpy on a changed message: %v, want both signatures failed", got)
	}
	// dkimpy honours the oversigned From too.
	added := "From: Mallory <mallory@example.com>\r\n" + signed
	if got := dkimpyVerify(t, added, records); !slices.Equal(got, []bool{false, false}) {
		t.Errorf("dkimpy on a message with a From added: %v, want both signatures failed", got)
	}
}
