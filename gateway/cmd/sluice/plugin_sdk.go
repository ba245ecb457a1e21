package main

import (
	"bufio"
	"bytes"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/sluice-mail/sluice"
)

// sdkFolder is the folder, inside a new plugin's, that holds a copy of the
// SDK's module. The plugin's go.mod replaces the module with it, so that
// the plugin builds and tests on a machine with no published Sluice module:
// the sluice binary that wrote it is enough.
const sdkFolder = "sluice-sdk"

// sdkPseudoVersion is the version a go.mod requires of a module it only
// ever takes from a replace directive (what `go mod tidy` writes).
const sdkPseudoVersion = "v0.0.0-00010101000000-000000000000"

// pluginModule returns the files, by slash-separated path in the plugin's
// folder, that make the plugin named name a module of its own: its go.mod
// and go.sum, and the SDK's source (without its tests) under sdkFolder,
// with a go.mod that requires only what the SDK imports.
func pluginModule(name string) (map[string][]byte, error) {
	src := sluice.SDKSource()
	mod, err := readGoMod(src)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	needs := map[string]bool{} // module paths the SDK imports from
	err = fs.WalkDir(src, "sdk", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		files[path.Join(sdkFolder, p)] = b
		if path.Ext(p) != ".go" {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, b, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			ip := strings.Trim(imp.Path.Value, `"`)
			if !strings.Contains(strings.Split(ip, "/")[0], ".") || within(ip, mod.path) {
				continue // the standard library, or the SDK itself
			}
			m := mod.provider(ip)
			if m == "" {
				return fmt.Errorf("the SDK imports %s, which go.mod does not require", ip)
			}
			needs[m] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var deps []string // "path version", sorted
	for m := range needs {
		deps = append(deps, m+" "+mod.require[m])
	}
	sort.Strings(deps)

	var sdkMod, plugMod bytes.Buffer
	fmt.Fprintf(&sdkMod, "module %s\n\ngo %s\n", mod.path, mod.goVersion)
	fmt.Fprintf(&plugMod, "module %s\n\ngo %s\n\nrequire %s %s\n", name, mod.goVersion, mod.path, sdkPseudoVersion)
	for _, d := range deps {
		fmt.Fprintf(&sdkMod, "\nrequire %s\n", d)
		fmt.Fprintf(&plugMod, "\nrequire %s // indirect\n", d)
	}
	fmt.Fprintf(&plugMod, "\n// The SDK, from the sluice binary that wrote this plugin (sluice plugin new).\nreplace %s => ./%s\n", mod.path, sdkFolder)
	files[path.Join(sdkFolder, "go.mod")] = sdkMod.Bytes()
	files["go.mod"] = plugMod.Bytes()

	// The checksums of what the SDK requires, so that the go command
	// verifies them, and needs no go mod tidy, whether it finds them in
	// its module cache or downloads them.
	sums, err := fs.ReadFile(src, "go.sum")
	if err != nil {
		return nil, err
	}
	var goSum bytes.Buffer
	for _, line := range strings.SplitAfter(string(sums), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && needs[f[0]] && strings.TrimSuffix(f[1], "/go.mod") == mod.require[f[0]] {
			goSum.WriteString(line)
		}
	}
	files["go.sum"] = goSum.Bytes()
	return files, nil
}

// goMod is what pluginModule needs of the SDK module's go.mod.
type goMod struct {
	path      string
	goVersion string
	require   map[string]string // module path → version
}

// readGoMod reads go.mod as `go mod tidy` writes it: one requirement a
// line, in require blocks or not.
func readGoMod(src fs.FS) (*goMod, error) {
	b, err := fs.ReadFile(src, "go.mod")
	if err != nil {
		return nil, err
	}
	m := &goMod{require: map[string]string{}}
	inRequire := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
		case f[0] == "module" && len(f) == 2:
			m.path = f[1]
		case f[0] == "go" && len(f) == 2:
			m.goVersion = f[1]
		case f[0] == "require" && len(f) == 2 && f[1] == "(":
			inRequire = true
		case inRequire && f[0] == ")":
			inRequire = false
		case f[0] == "require" && len(f) >= 3:
			m.require[f[1]] = f[2]
		case inRequire && len(f) >= 2:
			m.require[f[0]] = f[1]
		}
	}
	if m.path == "" || m.goVersion == "" {
		return nil, fmt.Errorf("the SDK's go.mod names no module or no go version")
	}
	return m, nil
}

// provider returns the required module that provides the package at import
// path p: the one with the longest path that p is within.
func (m *goMod) provider(p string) string {
	best := ""
	for mp := range m.require {
		if within(p, mp) && len(mp) > len(best) {
			best = mp
		}
	}
	return best
}

// within says whether import path p is the module path mp or below it.
func within(p, mp string) bool {
	return p == mp || strings.HasPrefix(p, mp+"/")
}
