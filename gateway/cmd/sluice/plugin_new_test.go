package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sluice plugin new, run by the built binary in an empty folder outside
// the repository, writes a plugin that its printed next: commands test and
// build, with nothing fetched (GOPROXY=off; the SDK's one dependency,
// BurntSushi/toml, comes from the module cache as on any machine that has
// built Go code with it, else from the proxy) and go.mod and go.sum
// complete as written (-mod=readonly). The plugin passes the conformance
// checks and does what its README shows.
func TestPluginNewEndToEnd(t *testing.T) {
	bin := buildSluice(t, t.TempDir())
	dir := t.TempDir()
	cmd := exec.Command(bin, "plugin", "new", "greylist")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("plugin new: %v", err)
	}
	folder := filepath.Join(dir, "greylist")
	for _, f := range []string{"main.go", "main_test.go", "README.md", "example.toml", "go.mod", "go.sum", "sluice-sdk/go.mod", "sluice-sdk/sdk/sdk.go"} {
		if !fileExists(filepath.Join(folder, f)) {
			t.Errorf("plugin new wrote no %s", f)
		}
	}
	_, next, ok := strings.Cut(string(out), "next:\n")
	if !ok || !strings.HasPrefix(string(out), "wrote greylist;") {
		t.Fatalf("plugin new printed %q: no next: commands, or not where it wrote", out)
	}
	sh := exec.Command("sh", "-ec", next)
	sh.Dir = dir
	sh.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly", "GOWORK=off")
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.TrimSpace(next), err, out)
	}
	if out, _ := exec.Command("gofmt", "-l", folder).Output(); len(out) > 0 {
		t.Errorf("gofmt -l: %s", out)
	}

	wasm := filepath.Join(folder, "greylist.wasm")
	config, _ := os.ReadFile(filepath.Join(folder, "example.toml"))
	r := conform(t, wasm, string(config))
	if r.Failed() || r.count(checkWarn) > 0 {
		t.Errorf("the new plugin does not pass the conformance checks cleanly")
	}
	if n := runReadme(t, filepath.Join(folder, "README.md"), wasm); n == 0 {
		t.Error("the new plugin's README shows no sluice command")
	}
}

// The SDK copy a new plugin gets is the SDK's source, tests left out, and
// its go.mod requires exactly the modules the SDK's packages use, as the
// go command lists them: nothing the plugin would have to fetch for nothing.
func TestPluginModuleHoldsTheSDK(t *testing.T) {
	files, err := pluginModule("x")
	if err != nil {
		t.Fatal(err)
	}
	srcs, _ := filepath.Glob(filepath.Join(moduleRoot, "sdk", "*", "*.go"))
	top, _ := filepath.Glob(filepath.Join(moduleRoot, "sdk", "*.go"))
	for _, f := range append(srcs, top...) {
		rel := filepath.ToSlash(must(filepath.Rel(moduleRoot, f)))
		got, ok := files["sluice-sdk/"+rel]
		if strings.HasSuffix(f, "_test.go") {
			if ok {
				t.Errorf("the copy holds the test %s", rel)
			}
			continue
		}
		if want, _ := os.ReadFile(f); !bytes.Equal(got, want) {
			t.Errorf("the copy of %s differs from the source (present: %v)", rel, ok)
		}
	}
	list := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}require {{.Path}} {{.Version}}{{end}}{{end}}", "./sdk/...")
	list.Dir = moduleRoot
	deps, err := list.Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(string(deps)), "\n") {
		if l != "" && !slices.Contains(want, l) {
			want = append(want, l)
		}
	}
	slices.Sort(want)
	var got []string
	for _, l := range strings.Split(string(files["sluice-sdk/go.mod"]), "\n") {
		if strings.HasPrefix(l, "require ") {
			got = append(got, l)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("the SDK copy's go.mod requires %q; go list says the SDK uses %q", got, want)
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
