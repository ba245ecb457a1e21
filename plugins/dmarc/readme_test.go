package main

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// example is a ```toml block of the README and the table of messages and
// results that follows it, if any.
type example struct {
	line int
	toml string
	rows []row
}

type row struct {
	line          int
	found, result string
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
				t.Fatalf("README.md:%d: an example row needs two cells", n)
			}
			found, result := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
			if found == "the gateway found" || strings.HasPrefix(found, "---") {
				continue
			}
			cur.rows = append(cur.rows, row{n, found, result})
		case cur != nil && strings.HasPrefix(line, "#"):
			cur = nil // a new section: later tables are not this block's
		}
	}
	return out
}

// pluginConfig takes the plugin's [plugin.config] table out of a
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
	if len(doc.Plugin) != 1 || doc.Plugin[0].Name != "dmarc" {
		t.Fatalf("README.md:%d: want one [[plugin]] named dmarc", e.line)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(doc.Plugin[0].Config); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// request builds the data-stage request that a row's key=value words
// describe.
func request(t *testing.T, r row) *sdk.Request {
	t.Helper()
	req := &sdk.Request{Stage: abi.StageData, SessionID: "readme-" + strconv.Itoa(r.line)}
	a := &req.Auth
	a.DMARC.Pct = 100
	for word := range strings.FieldsSeq(r.found) {
		key, value, ok := strings.Cut(word, "=")
		if !ok {
			t.Fatalf("README.md:%d: %q is not key=value", r.line, word)
		}
		switch key {
		case "from":
			a.DMARC.FromDomain = value
		case "dmarc":
			a.DMARC.Result = value
		case "p":
			a.DMARC.Policy = value
		case "pct":
			pct, err := strconv.ParseUint(value, 10, 8)
			if err != nil || pct > 100 {
				t.Fatalf("README.md:%d: pct=%s", r.line, value)
			}
			a.DMARC.Pct = uint32(pct)
		case "spf":
			a.SPF.Result = value
		case "dkim":
			if value != "none" {
				a.DKIM = append(a.DKIM, abi.DKIM{Result: value, Domain: "signer.test"})
			}
		case "arc":
			a.ARC.Result = value
		case "sealers":
			a.ARC.Sealers = strings.Split(value, ",")
			a.ARC.Instances = uint32(len(a.ARC.Sealers))
		case "oldest-pass":
			n, err := strconv.ParseUint(value, 10, 32)
			if err != nil {
				t.Fatalf("README.md:%d: oldest-pass=%s", r.line, value)
			}
			a.ARC.OldestPass = uint32(n)
		default:
			t.Fatalf("README.md:%d: unknown key %q", r.line, key)
		}
	}
	return req
}

func TestReadmeExamples(t *testing.T) {
	examples := readmeExamples(t)
	if len(examples) < 4 {
		t.Fatalf("found %d toml blocks in README.md, want at least 4", len(examples))
	}
	checked := 0
	for _, e := range examples {
		p, c, err := configure(t, pluginConfig(t, e))
		if err != nil {
			t.Errorf("README.md:%d: does not configure: %v", e.line, err)
			continue
		}
		for _, r := range e.rows {
			if got := decide(t, p, c, request(t, r)); got != r.result {
				t.Errorf("README.md:%d: the plugin answers %q, the README says %q", r.line, got, r.result)
			}
			checked++
		}
	}
	if checked < 15 {
		t.Errorf("checked %d rows of the README, want at least 15", checked)
	}
}
