package arc

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
)

// dkimpyVerify runs dkimpy's arc_verify (Debian's python3-dkim) on msg and
// returns the chain validation status it gives and its reason.
func dkimpyVerify(t *testing.T, msg []byte, hops []hop) (cv, reason string) {
	t.Helper()
	r := dkimpy.Check(t, msg, keyRecords(t, hops))
	return r.ARC, r.Reason
}

// TestDkimpyVerifies has dkimpy, an independent implementation, validate
// chains Sluice sealed with RSA: one set, then two, folded as Seal folds
// them and with the default header list.
func TestDkimpyVerifies(t *testing.T) {
	hops := benchHops()["rsa2048"]
	lookup := mapLookup(t, hops)
	msg := []byte("DKIM-Signature: v=1; d=example.org; s=x; b=abc\r\n" + testMessage)
	for n := range hops {
		msg = sealBy(t, msg, hops[n], lookup)
		if cv, reason := dkimpyVerify(t, msg, hops); cv != "pass" {
			t.Errorf("dkimpy on %d sets: cv=%s (%s), want pass", n+1, cv, reason)
		}
	}
	// The same check on a changed body must fail, or the one above proves
	// nothing.
	changed := bytes.Replace(msg, []byte("noon"), []byte("one"), 1)
	if cv, reason := dkimpyVerify(t, changed, hops); cv != "fail" {
		t.Errorf("dkimpy on a changed body: cv=%s (%s), want fail", cv, reason)
	}
}

// TestDkimpyRefusesEd25519 records why Ed25519 is not the default: dkimpy
// (1.1) validates ARC with rsa-sha256 only, and so will many validators.
// If dkimpy learns Ed25519, this fails: then check that it passes.
func TestDkimpyRefusesEd25519(t *testing.T) {
	hops := benchHops()["ed25519"]
	msg := sealBy(t, []byte(testMessage), hops[0], mapLookup(t, hops))
	cv, reason := dkimpyVerify(t, msg, hops)
	if cv != "fail" || !strings.Contains(reason, "ed25519-sha256") {
		t.Errorf("dkimpy on an Ed25519 seal: cv=%s (%s), want fail for the unknown algorithm", cv, reason)
	}
}
