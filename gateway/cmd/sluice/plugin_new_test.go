package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// sluice plugin new writes a plugin that passes its own test, builds for
// wasip1, passes the conformance checks, and does what its README shows.
// It is written into the module (in a folder that ./... skips), so that its
// imports of the SDK resolve as they would in a plugin author's module.
func TestPluginNewEndToEnd(t *testing.T) {
	root, err := filepath.Abs(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(root, ".plugin-new-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"plugin", "new", "greylist", "-dir", dir}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("plugin new: exit %d: %s", code, stderr.String())
	}
	folder := filepath.Join(dir, "greylist")
	for _, f := range []string{"main.go", "main_test.go", "README.md", "example.toml"} {
		if !fileExists(filepath.Join(folder, f)) {
			t.Errorf("plugin new wrote no %s", f)
		}
	}
	if !strings.Contains(stdout.String(), folder) {
		t.Errorf("plugin new said %q, not where it wrote", stdout.String())
	}
	pkg := "./" + filepath.ToSlash(must(filepath.Rel(root, folder)))

	// Its own test passes natively, and gofmt has nothing to say.
	test := exec.Command("go", "test", pkg)
	test.Dir = root
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("go test %s: %v\n%s", pkg, err, out)
	}
	if out, _ := exec.Command("gofmt", "-l", folder).Output(); len(out) > 0 {
		t.Errorf("gofmt -l: %s", out)
	}

	wasm := filepath.Join(t.TempDir(), "greylist.wasm")
	if err := wasmbuild.Build(context.Background(), root, pkg, wasm); err != nil {
		t.Fatal(err)
	}
	config, _ := os.ReadFile(filepath.Join(folder, "example.toml"))
	r := conform(t, wasm, string(config))
	if r.Failed() || r.count(checkWarn) > 0 {
		t.Errorf("the new plugin does not pass the conformance checks cleanly")
	}
	if n := runReadme(t, filepath.Join(folder, "README.md"), wasm); n == 0 {
		t.Error("the new plugin's README shows no sluice command")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestPluginNewRefuses(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "taken"), 0o755)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"taken"}, 1, "already exists"},
		{[]string{"../up"}, 1, "is not a plugin name"},
		{[]string{"9lives"}, 1, "is not a plugin name"},
		{[]string{}, 2, "usage: sluice plugin new"},
		{[]string{"a", "b"}, 2, "usage: sluice plugin new"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"plugin", "new", "-dir", dir}, c.args...), nil, &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("plugin new %v: exit %d, %q; want %d, %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("refusals wrote %d entries", len(entries)-1)
	}
}
