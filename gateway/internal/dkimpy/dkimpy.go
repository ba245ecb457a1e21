// Package dkimpy runs Debian's dkimpy (python3-dkim), an implementation of
// DKIM and ARC independent of ours, for tests: whatever we sign or seal,
// it must verify.
package dkimpy

import (
	_ "embed"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

//go:embed check.py
var checkScript []byte

// Result is what dkimpy found in a message.
type Result struct {
	DKIM   []bool // each DKIM-Signature, top one first: did it verify?
	ARC    string // the chain's validation: none, pass or fail
	Reason string // dkimpy's reason for the ARC result
}

// Check verifies msg's DKIM signatures and ARC chain with dkimpy. records
// are its DNS: "selector._domainkey.domain" (a final dot or not) to TXT.
func Check(t testing.TB, msg []byte, records map[string]string) Result {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "check.py")
	if err := os.WriteFile(script, checkScript, 0o600); err != nil {
		t.Fatal(err)
	}
	out := Run(t, script, WriteFile(t, "message.eml", msg), WriteJSON(t, "records.json", records))
	var r Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("dkimpy said %q: %v", out, err)
	}
	return r
}

// Run runs a Python script with Debian's python3, where python3-dkim
// installs (not a python3 from PATH), and returns what it prints. The
// script exits 3 when dkimpy is missing.
func Run(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", append([]string{script}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) && exit.ExitCode() == 3 {
		t.Fatal("dkimpy is missing: apt-get install -y python3-dkim python3-nacl")
	}
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, stderr.String())
	}
	return out
}

// WriteFile writes data to a file of that name in a temporary directory
// and returns its path.
func WriteFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteJSON writes v as JSON to a temporary file and returns its path.
func WriteJSON(t testing.TB, name string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return WriteFile(t, name, data)
}
