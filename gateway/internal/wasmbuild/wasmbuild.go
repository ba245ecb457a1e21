// Package wasmbuild builds Go plugins into WebAssembly modules with the Go
// toolchain, and gives tests a plugin built from source once per process.
package wasmbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Build compiles the Go package pkg (a path such as "./plugins/router",
// relative to moduleDir) into the WebAssembly module out, the way plugin
// authors do by hand: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
// The build is reproducible (-trimpath -buildvcs=false): the same source
// makes the same module from any checkout at any commit, so the compiled
// module cached by wazero under its hash serves every later run instead
// of a new entry of up to 21 MB per checkout and commit.
func Build(ctx context.Context, moduleDir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, output.Bytes())
	}
	return nil
}

// built remembers, per test process, the module built for each package, so
// that every test of a package shares one build.
var built sync.Map // pkg → *build

type build struct {
	once sync.Once
	path string
	err  error
}

// ForTest builds the plugin package pkg (relative to the module root, e.g.
// "./plugins/router") once per test process and returns the .wasm path.
func ForTest(t testing.TB, pkg string) string {
	t.Helper()
	v, _ := built.LoadOrStore(pkg, &build{})
	b := v.(*build)
	b.once.Do(func() { b.path, b.err = buildForTest(pkg) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func buildForTest(pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	// A stable directory per checkout, so that runs do not pile up files;
	// each build goes to a file of its own and is renamed into place, since
	// tests of several packages build the same plugin in parallel processes.
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("sluice-test-wasm-%x", sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := strings.NewReplacer("/", "_", ".", "_").Replace(strings.Trim(pkg, "./"))
	out := filepath.Join(dir, name+".wasm")
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	if err := Build(context.Background(), root, pkg, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// CacheDirForTest is the wazero compilation cache that tests share, so that
// a module is compiled once per machine rather than once per test run.
func CacheDirForTest() string {
	return filepath.Join(os.TempDir(), "sluice-test-wazero-cache")
}
