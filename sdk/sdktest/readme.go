package sdktest

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// Example is a ```toml block of a plugin's README and the rows of the
// tables that follow it in the same section: what the README promises the
// plugin does with that configuration. A test runs the rows, so the README
// cannot drift from the code.
type Example struct {
	File string // the README's path, for messages
	Line int    // the line of the ```toml fence
	TOML string // the block's text
	Rows []Row  // the table rows after the block, without header and separator
}

// Row is a row of a table after an Example's block.
type Row struct {
	Line  int      // the row's line in the README
	Cells []string // the cells' text, trimmed of spaces
}

// ReadmeExamples reads the README at path and returns its examples in the
// order they appear. It fails the test if the file cannot be read or a
// table is malformed (no separator row, a row with more or fewer cells than
// the header).
func ReadmeExamples(t testing.TB, path string) []Example {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	examples, err := readExamples(path, f)
	if err != nil {
		t.Fatal(err)
	}
	return examples
}

func readExamples(path string, r io.Reader) ([]Example, error) {
	var out []Example
	var cur *Example
	inFence, fence := false, "" // fence: the open fence's info string (toml, sh, ...)
	row, cols := 0, 0           // the line's row in the current table, from 1; the header's cells
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "|") {
			row = 0
		}
		switch {
		case strings.HasPrefix(line, "```"):
			if inFence {
				inFence = false
				continue
			}
			inFence, fence = true, strings.TrimPrefix(line, "```")
			if fence == "toml" {
				out = append(out, Example{File: path, Line: n})
				cur = &out[len(out)-1]
			}
		case inFence:
			// Only a toml block's text is kept; a '#' or '|' in any other
			// block is not a heading or a table.
			if fence == "toml" {
				cur.TOML += line + "\n"
			}
		case cur != nil && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			row++
			switch {
			case row == 1:
				cols = len(cells)
			case len(cells) != cols:
				return nil, fmt.Errorf("%s:%d: the row has %d cells, its table's header %d", path, n, len(cells), cols)
			case row == 2 && !separator(cells):
				return nil, fmt.Errorf("%s:%d: a table's second row must be its separator, |---|", path, n)
			case row == 2:
			default:
				cur.Rows = append(cur.Rows, Row{Line: n, Cells: cells})
			}
		case cur != nil && strings.HasPrefix(line, "#"):
			cur = nil // a new section: later tables are not this block's
		}
	}
	return out, sc.Err()
}

// separator reports whether cells are a table's |---|:--:| row.
func separator(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, "-:") != "" || !strings.Contains(c, "-") {
			return false
		}
	}
	return true
}

// PluginConfig takes the [plugin.config] table out of an example that is
// a gateway.toml with one [[plugin]], which must be named name, and
// returns it as TOML text, as the gateway hands it to the plugin (for New,
// Configure, or sdk.Config.Raw). It fails the test otherwise.
func (e Example) PluginConfig(t testing.TB, name string) string {
	t.Helper()
	config, err := e.pluginConfig(name)
	if err != nil {
		t.Fatal(err)
	}
	return config
}

func (e Example) pluginConfig(name string) (string, error) {
	var doc struct {
		Plugin []struct {
			Name   string         `toml:"name"`
			Config map[string]any `toml:"config"`
		} `toml:"plugin"`
	}
	if _, err := toml.Decode(e.TOML, &doc); err != nil {
		return "", fmt.Errorf("%s:%d: %v", e.File, e.Line, err)
	}
	if len(doc.Plugin) != 1 || doc.Plugin[0].Name != name {
		return "", fmt.Errorf("%s:%d: want one [[plugin]] named %s", e.File, e.Line, name)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(doc.Plugin[0].Config); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// ReadmeTest runs a plugin's README as a test: each example's
// configuration, then each row of its tables against the plugin so
// configured.
type ReadmeTest struct {
	Path     string // the README; "README.md" when empty
	Plugin   string // the [[plugin]] name in each example's configuration
	Examples int    // the toml blocks the README must have, at least
	Rows     int    // the rows it must check, at least
	Cells    int    // the cells of each row; 0 leaves them to the rows' function
}

// Run reads the README and calls configure with each example's plugin
// config (see PluginConfig). An error fails the test for that example,
// whose rows are skipped; otherwise the function configure returns
// answers each row of the example: what the plugin does (got) and what the
// row says it does (want), which must be the same. Run fails the test too
// when the README has fewer examples or rows than rt asks: a README that
// lost its tables would otherwise check nothing.
func (rt ReadmeTest) Run(t testing.TB, configure func(config string) (rows func(r Row) (got, want string), err error)) {
	t.Helper()
	path := cmp.Or(rt.Path, "README.md")
	examples := ReadmeExamples(t, path)
	if len(examples) < rt.Examples {
		t.Fatalf("found %d toml blocks in %s, want at least %d", len(examples), path, rt.Examples)
	}
	checked := 0
	for _, e := range examples {
		rows, err := configure(e.PluginConfig(t, rt.Plugin))
		if err != nil {
			t.Errorf("%s:%d: does not configure: %v", path, e.Line, err)
			continue
		}
		for _, r := range e.Rows {
			if rt.Cells != 0 && len(r.Cells) != rt.Cells {
				t.Fatalf("%s:%d: an example row needs %d cells", path, r.Line, rt.Cells)
			}
			if got, want := rows(r); got != want {
				t.Errorf("%s:%d: the plugin answers\n\t%q\nthe README says\n\t%q", path, r.Line, got, want)
			}
			checked++
		}
	}
	if checked < rt.Rows {
		t.Errorf("checked %d rows of %s, want at least %d", checked, path, rt.Rows)
	}
}
