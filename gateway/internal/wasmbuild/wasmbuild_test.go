package wasmbuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestForTestBuildsOnce(t *testing.T) {
	p := ForTest(t, "./plugins/router")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x00asm\x01\x00\x00\x00")) {
		t.Fatalf("%s is not a WebAssembly module", p)
	}
	if again := ForTest(t, "./plugins/router"); again != p {
		t.Errorf("second ForTest gave %s, want the first build %s", again, p)
	}
}

// A module names neither the checkout it was built in nor its commit, so
// that every checkout of the same source builds the same bytes.
func TestBuildIsReproducible(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(ForTest(t, "./plugins/router"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{root, "vcs.revision"} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("the module holds %q", s)
		}
	}
}

func TestBuildReportsCompilerErrors(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	err = Build(context.Background(), root, "./no/such/package", filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "no/such/package") {
		t.Errorf("Build of a missing package: %v, want an error naming it", err)
	}
}
