// The plugin has no Go code: this test assembles it with wat2wasm and runs
// it through the gateway's plugin host with the sluice command, as a user
// would.
package rcptlimit_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func build(t *testing.T) (sluice, wasm string) {
	t.Helper()
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Fatal("wat2wasm is not installed: install the Debian package wabt")
	}
	dir := t.TempDir()
	wasm = filepath.Join(dir, "rcptlimit.wasm")
	if out, err := exec.Command("wat2wasm", "rcptlimit.wat", "-o", wasm).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, out)
	}
	sluice = filepath.Join(dir, "sluice")
	cmd := exec.Command("go", "build", "-o", sluice, "./gateway/cmd/sluice")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return sluice, wasm
}

// run runs sluice and returns its output and exit status.
func run(t *testing.T, sluice string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(sluice, append(args, "-cache-dir", filepath.Join(os.TempDir(), "sluice-test-wazero-cache"))...).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestThroughTheHost(t *testing.T) {
	sluice, wasm := build(t)
	cfg := filepath.Join(t.TempDir(), "three.toml")
	os.WriteFile(cfg, []byte("# the limit\nmax_recipients = 3\r\n\n"), 0o644)
	rcpts := []string{"--rcpt", "a@x.test", "--rcpt", "b@x.test", "--rcpt", "c@x.test", "--rcpt", "d@x.test", "--rcpt", "e@x.test"}
	out, code := run(t, sluice, append([]string{"plugin", "test", wasm, "--config", cfg}, rcpts...)...)
	want := "rcpt <a@x.test>: continue\nrcpt <b@x.test>: continue\nrcpt <c@x.test>: continue\n" +
		"rcpt <d@x.test>: tempfail 452 4.5.3 Too many recipients for one message, send the rest in another\n" +
		"rcpt <e@x.test>: tempfail 452 4.5.3 Too many recipients for one message, send the rest in another\n"
	if out != want || code != 1 {
		t.Errorf("exit %d, printed\n%s\nwant\n%s", code, out, want)
	}

	// The default, 100: five recipients pass.
	if out, code := run(t, sluice, append([]string{"plugin", "test", wasm}, rcpts...)...); code != 0 || strings.Contains(out, "tempfail") {
		t.Errorf("default limit: exit %d, printed\n%s", code, out)
	}

	// Settings it cannot read refuse the load.
	for _, bad := range []string{"max_recipients = 0", "max_recipients = 1000001", "max_recipients = \"3\"", "max_recipients = 3\nother = 1", "limit = 3", "[max_recipients]"} {
		os.WriteFile(cfg, []byte(bad), 0o644)
		out, code := run(t, sluice, "plugin", "check", wasm, "--config", cfg)
		if code != 1 || !strings.Contains(out, "config refused: the only setting is max_recipients") {
			t.Errorf("%q: exit %d, printed\n%s", bad, code, out)
		}
	}

	// Every conformance check passes.
	os.WriteFile(cfg, []byte("max_recipients = 1"), 0o644)
	if out, code := run(t, sluice, "plugin", "check", wasm, "--config", cfg); code != 0 || !strings.Contains(out, "PASS: 0 failed, 0 warnings") {
		t.Errorf("plugin check: exit %d\n%s", code, out)
	}
}
