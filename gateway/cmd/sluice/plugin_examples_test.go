package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// moduleRoot is the repository's root, from this package's directory.
const moduleRoot = "../../.."

// buildExample builds the plugin in a folder of the repository (such as
// "examples/subjecttag") and returns the .wasm path: a Go plugin with the Go
// toolchain, one written in WebAssembly text (NAME.wat) with wabt's
// wat2wasm.
func buildExample(t testing.TB, folder string) string {
	t.Helper()
	name := filepath.Base(folder)
	wat := filepath.Join(moduleRoot, folder, name+".wat")
	if _, err := os.Stat(wat); err != nil {
		return wasmbuild.ForTest(t, "./"+folder)
	}
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Fatalf("%s is WebAssembly text, and wat2wasm is not installed: install the Debian package wabt", wat)
	}
	out := filepath.Join(t.TempDir(), name+".wasm")
	if b, err := exec.Command("wat2wasm", wat, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm %s: %v\n%s", wat, err, b)
	}
	return out
}

// examples lists the folders under examples/.
func examples(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(moduleRoot, "examples", "*", "README.md"))
	if err != nil || len(dirs) < 3 {
		t.Fatalf("found %d examples (%v), want at least 3", len(dirs), err)
	}
	var out []string
	for _, d := range dirs {
		out = append(out, filepath.Join("examples", filepath.Base(filepath.Dir(d))))
	}
	return out
}

// readmeExample is what a README's Examples section shows: the config files
// (```toml blocks whose first line is "# NAME.toml") and the commands (lines
// "$ sluice plugin ..." in ```sh blocks), each with the output after it.
type readmeExample struct {
	files    map[string]string
	commands []readmeCommand
}

type readmeCommand struct {
	line int
	args []string
	want string
}

func readReadme(t *testing.T, path string) readmeExample {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ex := readmeExample{files: map[string]string{}}
	var block, file string
	var body strings.Builder
	var cmd *readmeCommand
	inExamples := false
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case block == "" && strings.HasPrefix(line, "## "):
			inExamples = line == "## Examples"
		case !inExamples:
		case block == "" && strings.HasPrefix(line, "```"):
			block, file = strings.TrimPrefix(line, "```"), ""
			body.Reset()
		case block != "" && line == "```":
			if block == "toml" && file != "" {
				ex.files[file] = body.String()
			}
			block, cmd = "", nil
		case block == "toml":
			if body.Len() == 0 && strings.HasPrefix(line, "# ") && strings.HasSuffix(line, ".toml") {
				file = strings.TrimPrefix(line, "# ")
			}
			body.WriteString(line + "\n")
		case block == "sh" && strings.HasPrefix(line, "$ sluice "):
			ex.commands = append(ex.commands, readmeCommand{line: n, args: strings.Fields(strings.TrimPrefix(line, "$ sluice "))})
			cmd = &ex.commands[len(ex.commands)-1]
		case block == "sh" && cmd != nil:
			cmd.want += line + "\n"
		}
	}
	return ex
}

// runReadme runs the commands of a README's Examples section with the
// plugin at wasm, and checks their output and exit status: 1 when a stage
// was refused, else 0.
func runReadme(t *testing.T, readme, wasm string) int {
	t.Helper()
	ex := readReadme(t, readme)
	dir, tmp := filepath.Dir(readme), t.TempDir()
	for name, content := range ex.files {
		os.WriteFile(filepath.Join(tmp, name), []byte(content), 0o644)
	}
	for _, c := range ex.commands {
		args := make([]string, len(c.args))
		for i, a := range c.args {
			switch {
			case strings.HasSuffix(a, ".wasm"):
				// Under the README's name, which names the plugin.
				link := filepath.Join(tmp, a)
				if !fileExists(link) {
					if err := os.Symlink(wasm, link); err != nil {
						t.Fatal(err)
					}
				}
				a = link
			case ex.files[a] != "":
				a = filepath.Join(tmp, a)
			case i > 0 && !strings.HasPrefix(a, "-") && fileExists(filepath.Join(dir, a)):
				a = filepath.Join(dir, a)
			}
			args[i] = a
		}
		args = append(args, "-cache-dir", wasmbuild.CacheDirForTest(), "-dns-server", "127.0.0.1:9")
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, nil, &stdout, &stderr)
		got := strings.ReplaceAll(stdout.String(), tmp+string(filepath.Separator), "")
		if got != c.want {
			t.Errorf("%s:%d: sluice %s printed\n%s(stderr: %s)\nthe README shows\n%s", readme, c.line, strings.Join(c.args, " "), got, stderr.String(), c.want)
		}
		want := exitPassed
		for _, refused := range []string{": reject ", ": tempfail ", ": failed: ", "\nFAIL: "} {
			if strings.Contains("\n"+c.want, refused) {
				want = exitRefused
			}
		}
		if code != want {
			t.Errorf("%s:%d: exit status %d, want %d", readme, c.line, code, want)
		}
	}
	return len(ex.commands)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Every example builds, and the commands in its README print what the
// README shows, through the gateway's plugin host.
func TestExampleReadmes(t *testing.T) {
	for _, folder := range examples(t) {
		t.Run(filepath.Base(folder), func(t *testing.T) {
			wasm := buildExample(t, folder)
			if n := runReadme(t, filepath.Join(moduleRoot, folder, "README.md"), wasm); n < 3 {
				t.Errorf("%s/README.md shows %d sluice commands, want at least 3", folder, n)
			}
		})
	}
}

// Every README of a plugin or example has the fixed sections, in order.
func TestReadmeSections(t *testing.T) {
	want := []string{"## Name", "## Description", "## Configuration", "## Examples", "## See also"}
	readmes, _ := filepath.Glob(filepath.Join(moduleRoot, "examples", "*", "README.md"))
	plugins, _ := filepath.Glob(filepath.Join(moduleRoot, "plugins", "*", "README.md"))
	for _, f := range append(readmes, plugins...) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, line := range strings.Split(string(src), "\n") {
			if strings.HasPrefix(line, "## ") {
				got = append(got, line)
			}
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s has sections %q, want %q", f, got, want)
		}
	}
}
