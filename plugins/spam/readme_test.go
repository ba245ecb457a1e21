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
	sdktest.ReadmeTest{Plugin: "spam", Examples: 3, Rows: 8, Cells: 2}.Run(t, func(config string) (func(sdktest.Row) (string, string), error) {
		p, err := sdktest.Configure(&plugin{now: func() time.Time { return testNow }}, config, readmeDNS...)
		return func(r sdktest.Row) (string, string) {
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
			return describe(scan(t, p, strings.Join(words, " "), string(msg))), r.Cells[1]
		}, err
	})
}
