package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// codeSpans are a cell's `code spans`: each one a header field.
var codeSpans = regexp.MustCompile("`([^`]*)`")

// spans returns the code spans of a cell, joined the way describe writes
// the fields a verdict adds; a cell without any is returned as it is.
func spans(cell string) string {
	m := codeSpans.FindAllStringSubmatch(cell, -1)
	if m == nil {
		return cell
	}
	var fields []string
	for _, s := range m {
		fields = append(fields, s[1])
	}
	return strings.Join(fields, ", ")
}

// found builds the data-stage request that the key=value words of the row
// at line describe.
func found(t *testing.T, line int, words string) *sdk.Request {
	t.Helper()
	req := &sdk.Request{Stage: abi.StageData, SessionID: "readme"}
	d := &req.Auth.DMARC
	d.FromDomain, d.Pct = "example.org", 100
	for word := range strings.FieldsSeq(words) {
		key, value, ok := strings.Cut(word, "=")
		if !ok {
			t.Fatalf("README.md:%d: %q is not key=value", line, word)
		}
		switch key {
		case "from":
			d.FromDomain = value
		case "dmarc":
			d.Result = value
		case "p":
			d.Policy = value
		case "aligned":
			for a := range strings.SplitSeq(value, ",") {
				switch a {
				case "spf":
					d.SPFAligned = true
				case "dkim":
					d.DKIMAligned = true
				default:
					t.Fatalf("README.md:%d: aligned=%s", line, value)
				}
			}
		case "smtputf8":
			req.UTF8 = value == "yes"
		default:
			t.Fatalf("README.md:%d: unknown key %q", line, key)
		}
	}
	if d.SPFAligned {
		d.Reason = "SPF (" + d.FromDomain + ") aligns with " + d.FromDomain
	}
	return req
}

// Each ```toml block of the README configures the plugin; the tables that
// follow it say what it does with messages (three cells) and recipients
// (two).
func TestReadmeExamples(t *testing.T) {
	sdktest.ReadmeTest{Plugin: "fromrewrite", Examples: 2, Rows: 15}.Run(t, func(config string) (func(sdktest.Row) (string, string), error) {
		p, err := sdktest.Configure(&plugin{}, config, sdktest.Domains("your-domain.test"))
		return func(r sdktest.Row) (string, string) {
			switch len(r.Cells) {
			case 3:
				p.SetMessage([]byte(strings.Join(fieldsOf(r.Cells[1]), "\r\n") + "\r\nSubject: hi\r\n\r\nHello.\r\n"))
				v, err := p.Try(found(t, r.Line, r.Cells[0]))
				if err != nil {
					t.Fatalf("README.md:%d: %v", r.Line, err)
				}
				return describe(v), spans(r.Cells[2])
			case 2:
				v, err := p.Try(&sdk.Request{Stage: abi.StageRcpt, Rcpt: r.Cells[0]})
				if err != nil {
					t.Fatalf("README.md:%d: %v", r.Line, err)
				}
				return describe(v), r.Cells[1]
			}
			t.Fatalf("README.md:%d: a row needs two cells (recipients) or three (messages)", r.Line)
			return "", ""
		}, err
	})
}

// fieldsOf returns the header fields written as code spans in a cell.
func fieldsOf(cell string) []string {
	var fields []string
	for _, s := range codeSpans.FindAllStringSubmatch(cell, -1) {
		fields = append(fields, s[1])
	}
	return fields
}
