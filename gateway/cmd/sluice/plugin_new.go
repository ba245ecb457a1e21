package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// pluginTemplate holds the files of a new plugin: each NAME.tmpl becomes
// NAME in the plugin's folder.
//
//go:embed plugintemplate/*.tmpl
var pluginTemplate embed.FS

// pluginName is what gateway.toml accepts as a plugin's name; as a folder
// and a Go package path element it needs nothing more.
var pluginName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

func pluginNew(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("plugin new", "usage: sluice plugin new NAME [-dir DIR]\n\nWrites DIR/NAME/ with main.go, main_test.go, README.md and example.toml, and\nmakes it a Go module that builds with the SDK's source written beside it\n(in "+sdkFolder+"/), so that nothing needs downloading.\n\n", stderr)
	dir := flags.String("dir", ".", "the `directory` in which to make the plugin's folder")
	names, err := parseWithArgs(flags, args, stdout)
	if err != nil {
		return usageStatus(err)
	}
	if len(names) != 1 {
		flags.Usage()
		return 2
	}
	folder, err := scaffold(*dir, names[0])
	if err != nil {
		fmt.Fprintf(stderr, "sluice plugin new: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s; next:\n", folder)
	fmt.Fprintf(stdout, "  cd %s && go test . && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o %s.wasm .\n", folder, names[0])
	return 0
}

// scaffold writes a new plugin's folder, dir/name, and returns its path.
// It writes nothing if the folder exists, so that it never overwrites work.
func scaffold(dir, name string) (string, error) {
	if !pluginName.MatchString(name) {
		return "", fmt.Errorf("%q is not a plugin name: a letter, then letters, digits, - and _", name)
	}
	folder := filepath.Join(dir, name)
	if _, err := os.Stat(folder); err == nil {
		return "", fmt.Errorf("%s already exists", folder)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	files, err := fs.Glob(pluginTemplate, "plugintemplate/*.tmpl")
	if err != nil {
		return "", err
	}
	out := map[string][]byte{}
	for _, f := range files {
		t, err := template.ParseFS(pluginTemplate, f)
		if err != nil {
			return "", err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, struct{ Name string }{name}); err != nil {
			return "", err
		}
		out[strings.TrimSuffix(filepath.Base(f), ".tmpl")] = b.Bytes()
	}
	module, err := pluginModule(name)
	if err != nil {
		return "", err
	}
	for file, content := range module {
		out[file] = content
	}
	for file, content := range out {
		file = filepath.Join(folder, filepath.FromSlash(file))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(file, content, 0o644); err != nil {
			return "", err
		}
	}
	return folder, nil
}
