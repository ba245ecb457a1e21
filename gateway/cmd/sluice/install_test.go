package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/login"
)

// makeInstall runs `make install` in the repository with the given
// variables, and returns make's output.
func makeInstall(t *testing.T, vars ...string) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed (Debian package make)")
	}
	cmd := exec.Command("make", append([]string{"-s", "install"}, vars...)...)
	cmd.Dir = moduleRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install %s: %v\n%s", strings.Join(vars, " "), err, out)
	}
}

// make install with DESTDIR puts each file where docs/deploy.md says, with
// the paths in the unit and the example configuration filled in, and a
// binary that knows its version.
func TestMakeInstallDestdir(t *testing.T) {
	dest := t.TempDir()
	makeInstall(t, "DESTDIR="+dest)
	for file, mode := range map[string]os.FileMode{
		"usr/local/bin/sluice":                            0o755,
		"usr/local/lib/sluice/plugins/router/router.wasm": 0o644,
		"usr/local/lib/sluice/plugins/dmarc/dmarc.wasm":   0o644,
		"etc/sluice/gateway.toml.example":                 0o644,
		"usr/local/lib/systemd/system/sluice.service":     0o644,
	} {
		fi, err := os.Stat(filepath.Join(dest, file))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v; want mode %v", file, err, fi, mode)
		}
	}
	// Every first-party plugin, as docs/deploy.md lists them.
	deploy, _ := os.ReadFile(filepath.Join(moduleRoot, "docs", "deploy.md"))
	mains, _ := filepath.Glob(filepath.Join(moduleRoot, "plugins", "*", "main.go"))
	for _, m := range mains {
		name := filepath.Base(filepath.Dir(m))
		if fi, err := os.Stat(filepath.Join(dest, "usr/local/lib/sluice/plugins", name, name+".wasm")); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("plugin %s: %v, %v; want it installed, mode 0644", name, err, fi)
		}
		if !bytes.Contains(deploy, []byte("`"+name+"`")) {
			t.Errorf("docs/deploy.md does not list the installed plugin %s", name)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system/sluice.service"))
	example, _ := os.ReadFile(filepath.Join(dest, "etc/sluice/gateway.toml.example"))
	for _, want := range []string{"ExecStart=/usr/local/bin/sluice serve -c /etc/sluice/gateway.toml\n", "ExecReload=/bin/kill -HUP $MAINPID\n", "AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "User=sluice\n"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the installed unit has no line %q", want)
		}
	}
	if !bytes.Contains(example, []byte(`path = "/usr/local/lib/sluice/plugins/router/router.wasm"`)) {
		t.Errorf("the installed example configuration does not name the installed router plugin")
	}
	for name, b := range map[string][]byte{"unit": unit, "example configuration": example} {
		if bytes.Contains(b, []byte("@")) && bytes.Contains(b, []byte("DIR@")) {
			t.Errorf("the installed %s still has a placeholder", name)
		}
	}

	// The Makefile stamps `git describe` into the binary.
	describe := exec.Command("git", "describe", "--always", "--dirty")
	describe.Dir = moduleRoot
	want, err := describe.Output()
	if err != nil {
		t.Skipf("no git describe (%v): the version stamp is not checked", err)
	}
	out, err := exec.Command(filepath.Join(dest, "usr/local/bin/sluice"), "version").Output()
	if first := firstLine(string(out)); err != nil || first != "sluice "+strings.TrimSpace(string(want)) {
		t.Errorf("the installed sluice version says %q (%v), want %q", first, err, "sluice "+strings.TrimSpace(string(want)))
	}
}

// commentedOut is a line of the example configuration commented out to be
// turned on by removing its "#"; explanations start with "# ".
var commentedOut = regexp.MustCompile(`(?m)^#([^ \n]|$)`)

// Installed to a PREFIX, the example configuration passes sluice check
// once its keys and certificate exist (its plugin paths are where make
// install put the plugins), and so does it with every block commented out
// turned on (a block for each installed plugin), and systemd-analyze finds nothing wrong in the
// unit, whose ExecStart names the installed binary.
func TestMakeInstallPrefix(t *testing.T) {
	prefix := t.TempDir()
	makeInstall(t, "PREFIX="+prefix, "SYSCONFDIR="+filepath.Join(prefix, "etc"))

	// What docs/deploy.md has the operator make: state, cache, keys, TLS.
	state, cache, tlsDir := t.TempDir(), t.TempDir(), filepath.Join(prefix, "etc", "sluice", "tls")
	os.MkdirAll(filepath.Join(state, "keys"), 0o700)
	os.MkdirAll(tlsDir, 0o750)
	os.WriteFile(filepath.Join(state, "srs-secrets"), []byte("a-secret-for-the-test\n"), 0o600)
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "-bits", "1024", "-domain", "example.com", "-out", filepath.Join(state, "keys", "sluice.pem")}, nil, &bytes.Buffer{}, &stderr); code != 0 {
		t.Fatalf("keygen: %s", stderr.String())
	}
	cert, err := certs.SelfSigned("mx.example.com")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	os.WriteFile(filepath.Join(tlsDir, "fullchain.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
	os.WriteFile(filepath.Join(tlsDir, "privkey.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	example, err := os.ReadFile(filepath.Join(prefix, "etc", "sluice", "gateway.toml.example"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("/var/lib/sluice", state, "/var/cache/sluice", cache).Replace(string(example))
	if strings.Count(cfg, state) < 2 || !strings.Contains(cfg, cache) {
		t.Fatal("the example configuration no longer keeps its keys, secrets and cache under /var/lib/sluice and /var/cache/sluice; update this test and docs/deploy.md")
	}
	cfgPath := filepath.Join(prefix, "etc", "sluice", "gateway.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	out, err := exec.Command(filepath.Join(prefix, "bin", "sluice"), "check", "-c", cfgPath).CombinedOutput()
	if err != nil {
		t.Errorf("sluice check of the installed example: %v\n%s", err, out)
	}

	// Every block commented out, the other first-party plugins among them,
	// turned on as its note says; fromrewrite's secret and the submission
	// user's password are the operator's.
	all := commentedOut.ReplaceAllString(cfg, "$1")
	all = strings.Replace(all, `secret = ""`, `secret = "a-secret-for-the-test-of-24"`, 1)
	hash, err := login.HashBcrypt("a-password-for-the-test")
	if err != nil {
		t.Fatal(err)
	}
	all = strings.Replace(all, `password_hash = ""`, fmt.Sprintf("password_hash = %q", hash), 1)
	if !strings.Contains(all, "\n[submission]\n") || !strings.Contains(all, "\n[[submission.user]]\n") {
		t.Errorf("the example configuration has no [submission] to turn on")
	}
	mains, _ := filepath.Glob(filepath.Join(moduleRoot, "plugins", "*", "main.go"))
	if len(mains) < 2 {
		t.Fatalf("found %d first-party plugins", len(mains))
	}
	for _, m := range mains {
		name := filepath.Base(filepath.Dir(m))
		path := fmt.Sprintf("\npath = %q\n", filepath.Join(prefix, "lib", "sluice", "plugins", name, name+".wasm"))
		if !strings.Contains(all, path) {
			t.Errorf("the example configuration has no block, on or commented out, for the installed plugin %s", name)
		}
	}
	if !strings.Contains(all, "\n[scoring]\n") || !strings.Contains(all, "\n[dns]\n") {
		t.Errorf("the example configuration has no [scoring] or [dns] to turn on")
	}
	allPath := filepath.Join(prefix, "etc", "sluice", "all.toml")
	os.WriteFile(allPath, []byte(all), 0o644)
	out, err = exec.Command(filepath.Join(prefix, "bin", "sluice"), "check", "-c", allPath).CombinedOutput()
	if err != nil {
		t.Errorf("sluice check of the installed example with every block turned on: %v\n%s\n%s", err, out, all)
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd): the unit file is not verified")
	}
	unit := filepath.Join(prefix, "lib", "systemd", "system", "sluice.service")
	out, err = exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
}
