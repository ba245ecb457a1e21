package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// request builds the data-stage request that the key=value words found, of
// the row at line, describe.
func request(t *testing.T, line int, found string) *sdk.Request {
	t.Helper()
	req := &sdk.Request{Stage: abi.StageData, SessionID: "readme-" + strconv.Itoa(line)}
	a := &req.Auth
	a.DMARC.Pct = 100
	for word := range strings.FieldsSeq(found) {
		key, value, ok := strings.Cut(word, "=")
		if !ok {
			t.Fatalf("README.md:%d: %q is not key=value", line, word)
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
				t.Fatalf("README.md:%d: pct=%s", line, value)
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
				t.Fatalf("README.md:%d: oldest-pass=%s", line, value)
			}
			a.ARC.OldestPass = uint32(n)
		default:
			t.Fatalf("README.md:%d: unknown key %q", line, key)
		}
	}
	return req
}

// Each ```toml block of the README configures the plugin, and the table of
// messages and results that follows it says what it does with each.
func TestReadmeExamples(t *testing.T) {
	sdktest.ReadmeTest{Plugin: "dmarc", Examples: 4, Rows: 15, Cells: 2}.Run(t, func(config string) (func(sdktest.Row) (string, string), error) {
		p, c, err := configure(t, config)
		return func(r sdktest.Row) (string, string) {
			return decide(t, p, c, request(t, r.Line, r.Cells[0])), r.Cells[1]
		}, err
	})
}
