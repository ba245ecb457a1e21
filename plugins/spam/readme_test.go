package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// readmeDNS is what the README's examples find in DNS: the HELO name they
// use resolves, and a URIBL zone lists one domain.
var readmeDNS = []sdktest.Option{
	sdktest.Record(abi.TypeA, "mail.example.org", "192.0.2.25"),
	sdktest.Record(abi.TypeA, "spammy-pharmacy.example.multi.uribl.example", "127.0.0.2"),
}

// Each ```toml block of the README configures the plugin, and the table of
// messages that follows it says what the plugin answers to each. A row's
// first cell is key=value words as request reads them, and msg= a message
// of testdata/corpus (its X-Corpus-Envelope line is not used: the row
// gives the envelope).
func TestReadmeExamples(t *testing.T) {
	examples := sdktest.ReadmeExamples(t, "README.md")
	if len(examples) < 3 {
		t.Fatalf("found %d toml blocks in README.md, want at least 3", len(examples))
	}
	checked := 0
	for _, e := range examples {
		p, err := sdktest.Configure(&plugin{now: func() time.Time { return testNow }}, e.PluginConfig(t, "spam"), readmeDNS...)
		if err != nil {
			t.Errorf("README.md:%d: does not configure: %v", e.Line, err)
			continue
		}
		for _, r := range e.Rows {
			if len(r.Cells) != 2 {
				t.Fatalf("README.md:%d: an example row needs two cells", r.Line)
			}
			var words []string
			var msg []byte
			for w := range strings.FieldsSeq(r.Cells[0]) {
				name, ok := strings.CutPrefix(w, "msg=")
				if !ok {
					words = append(words, w)
					continue
				}
				raw, err := os.ReadFile(filepath.Join("testdata", "corpus", name))
				if err != nil {
					t.Fatalf("README.md:%d: %v", r.Line, err)
				}
				_, msg, _ = bytes.Cut(raw, []byte("\n"))
			}
			if msg == nil {
				t.Fatalf("README.md:%d: no msg=", r.Line)
			}
			v := scan(t, p, strings.Join(words, " "), string(msg))
			if got := describe(v); got != r.Cells[1] {
				t.Errorf("README.md:%d: the plugin answers\n%s\nthe README says\n%s", r.Line, got, r.Cells[1])
			}
			checked++
		}
	}
	if checked < 8 {
		t.Errorf("checked %d rows of the README, want at least 8", checked)
	}
}
