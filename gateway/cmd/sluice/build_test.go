package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// make build makes a static, pure-Go binary that signs RSA with crypto/rsa;
// make build OPENSSL=1 one that signs with OpenSSL, and says so.
func TestMakeBuildRSASigner(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed (Debian package make)")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		vars   []string
		signer string
		static bool
	}{
		{nil, "RSA signer: Go crypto/rsa\n", true},
		{[]string{"OPENSSL=1"}, "RSA signer: OpenSSL libcrypto (OpenSSL 3.", false},
	} {
		if len(c.vars) > 0 && !haveOpenSSLHeaders() {
			t.Log("skipped make build OPENSSL=1: no C compiler or OpenSSL headers (apt-get install gcc libc6-dev libssl-dev)")
			continue
		}
		bin := filepath.Join(dir, "sluice"+strings.Join(c.vars, ""))
		cmd := exec.Command("make", append([]string{"-s", "build", "SLUICE=" + bin}, c.vars...)...)
		cmd.Dir = moduleRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make build %s: %v\n%s\n(OPENSSL=1 needs apt-get install -y libssl-dev gcc libc6-dev)", strings.Join(c.vars, " "), err, out)
		}
		out, err := exec.Command(bin, "version").Output()
		if err != nil || !strings.Contains(string(out), c.signer) {
			t.Errorf("make build %s: sluice version says %q (%v), want %q", strings.Join(c.vars, " "), out, err, c.signer)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		interp := false // a dynamic executable names its loader
		for _, p := range f.Progs {
			interp = interp || p.Type == elf.PT_INTERP
		}
		f.Close()
		if interp == c.static {
			t.Errorf("make build %s: dynamically linked %v, want %v", strings.Join(c.vars, " "), interp, !c.static)
		}
	}
}

// haveOpenSSLHeaders reports whether cgo can build against OpenSSL here,
// as the Makefile's HAVE_OPENSSL asks.
func haveOpenSSLHeaders() bool {
	cmd := exec.Command("cc", "-E", "-")
	cmd.Stdin = strings.NewReader("#include <openssl/evp.h>\n")
	return cmd.Run() == nil
}

// The README lists the Debian packages .ci/run installs, all of them.
func TestReadmeListsCIPackages(t *testing.T) {
	ci, err := os.ReadFile(filepath.Join(moduleRoot, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(moduleRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, line, ok := strings.Cut(string(ci), "apt-get install -y --no-install-recommends ")
	line, _, _ = strings.Cut(line, "\n\n")
	if !ok {
		t.Fatal(".ci/run has no apt-get install line")
	}
	_, list, ok := strings.Cut(string(readme), "`apt-get install ")
	list, _, _ = strings.Cut(list, "`")
	if !ok {
		t.Fatal("README.md has no apt-get install list")
	}
	want := strings.Fields(strings.ReplaceAll(line, "\\", ""))
	if got := strings.Fields(list); !slices.Equal(got, want) {
		t.Errorf("README.md lists\n%v\n.ci/run installs\n%v", got, want)
	}
}
