package dkim

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dkimpyVerify runs dkimpy (Debian's python3-dkim) on msg and returns its
// verdict per signature, top one first, as "0 True\n1 False\n".
func dkimpyVerify(t *testing.T, msg string, records map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	msgPath := filepath.Join(dir, "message.eml")
	dnsPath := filepath.Join(dir, "records.json")
	dns, err := json.Marshal(records)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(msgPath, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dnsPath, dns, 0o600); err != nil {
		t.Fatal(err)
	}
	// Debian's python, not one from PATH: python3-dkim installs there.
	cmd := exec.Command("/usr/bin/python3", "testdata/dkimpy_verify.py", msgPath, dnsPath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) && exit.ExitCode() == 3 {
		t.Fatal("dkimpy is missing: apt-get install -y python3-dkim")
	}
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, stderr.String())
	}
	return string(out)
}

func TestDkimpyVerifies(t *testing.T) {
	keys := testKeys(t)
	records := txtRecords(t, testDomain, keys)
	signed := signMessage(t, newTestSigner(t, keys), testMessage)

	if got := dkimpyVerify(t, signed, records); got != "0 True\n1 True\n" {
		t.Errorf("dkimpy on the signed message:\n%s\nwant both signatures True", got)
	}
	// The same check on a changed body must fail, or the one above proves
	// nothing.
	changed := strings.Replace(signed, "noon", "one", 1)
	if got := dkimpyVerify(t, changed, records); got != "0 False\n1 False\n" {
		t.Errorf("dkimpy on a changed message:\n%s\nwant both signatures False", got)
	}
	// dkimpy honours the oversigned From too.
	added := "From: Mallory <mallory@example.com>\r\n" + signed
	if got := dkimpyVerify(t, added, records); got != "0 False\n1 False\n" {
		t.Errorf("dkimpy on a message with a From added:\n%s\nwant both signatures False", got)
	}
}
