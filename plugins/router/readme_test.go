package main

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// example is a ```toml block of the README and the table of recipients and
// results that follows it, if any.
type example struct {
	line   int
	toml   string
	routes [][2]string // recipient, result
}

func readmeExamples(t *testing.T) []example {
	t.Helper()
	f, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []example
	var cur *example
	inBlock := false
	sc := bufio.NewScanner(bytes.NewReader(f))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "```toml":
			out = append(out, example{line: n})
			cur, inBlock = &out[len(out)-1], true
		case inBlock && line == "```":
			inBlock = false
		case inBlock:
			cur.toml += line + "\n"
		case cur != nil && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) != 2 {
				t.Fatalf("README.md:%d: a route table row needs two cells", n)
			}
			rcpt, result := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
			if rcpt == "recipient" || strings.HasPrefix(rcpt, "---") {
				continue
			}
			cur.routes = append(cur.routes, [2]string{rcpt, result})
		case cur != nil && strings.HasPrefix(line, "#"):
			cur = nil // a new section: later tables are not this block's
		}
	}
	return out
}

// pluginConfig takes the router's [plugin.config] table out of a
// gateway.toml example and encodes it as the gateway hands it to plugins.
func pluginConfig(t *testing.T, e example) string {
	t.Helper()
	var doc struct {
		Plugin []struct {
			Name   string         `toml:"name"`
			Config map[string]any `toml:"config"`
		} `toml:"plugin"`
	}
	if _, err := toml.Decode(e.toml, &doc); err != nil {
		t.Fatalf("README.md:%d: %v", e.line, err)
	}
	if len(doc.Plugin) != 1 || doc.Plugin[0].Name != "router" {
		t.Fatalf("README.md:%d: want one [[plugin]] named router", e.line)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(doc.Plugin[0].Config); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestReadmeExamples(t *testing.T) {
	examples := readmeExamples(t)
	if len(examples) < 3 {
		t.Fatalf("found %d toml blocks in README.md, want at least 3", len(examples))
	}
	routed := 0
	for _, e := range examples {
		p, c, err := configure(t, pluginConfig(t, e))
		if err != nil {
			t.Errorf("README.md:%d: does not configure: %v", e.line, err)
			continue
		}
		for _, r := range e.routes {
			v := p.Rcpt(&sdk.Request{Stage: abi.StageRcpt, Rcpt: r[0]})
			if got := describe(v); got != r[1] {
				t.Errorf("README.md:%d: %s routes to %q, the README says %q", e.line, r[0], got, r[1])
			}
			if !c.Permissions().Allows((*abi.Verdict)(&v)) {
				t.Errorf("README.md:%d: %s: verdict outside the declared permissions", e.line, r[0])
			}
			routed++
		}
	}
	if routed < 10 {
		t.Errorf("checked %d routes from the README, want at least 10", routed)
	}
}
