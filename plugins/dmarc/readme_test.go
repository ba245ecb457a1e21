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
	examples := sdktest.ReadmeExamples(t, "README.md")
	if len(examples) < 4 {
		t.Fatalf("found %d toml blocks in README.md, want at least 4", len(examples))
	}
	checked := 0
	for _, e := range examples {
		p, c, err := configure(t, e.PluginConfig(t, "dmarc"))
		if err != nil {
			t.Errorf("README.md:%d: does not configure: %v", e.Line, err)
			continue
		}
		for _, r := range e.Rows {
			if len(r.Cells) != 2 {
				t.Fatalf("README.md:%d: an example row needs two cells", r.Line)
			}
			found, result := r.Cells[0], r.Cells[1]
			if got := decide(t, p, c, request(t, r.Line, found)); got != result {
				t.Errorf("README.md:%d: the plugin answers %q, the README says %q", r.Line, got, result)
			}
			checked++
		}
	}
	if checked < 15 {
		t.Errorf("checked %d rows of the README, want at least 15", checked)
	}
}
