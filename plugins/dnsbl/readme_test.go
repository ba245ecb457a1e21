package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// row runs one row of a README table: the client's words, the lists'
// answers, through the plugin configured with config.
func row(t *testing.T, line int, config, client, answers string) string {
	t.Helper()
	words := strings.Fields(client)
	req := &sdk.Request{Stage: abi.StageRcpt, SessionID: "readme", ClientIP: words[0], Rcpt: "info@your-domain.test"}
	ip, err := netip.ParseAddr(words[0])
	if err != nil {
		t.Fatalf("README.md:%d: %q is not an address", line, words[0])
	}
	for _, w := range words[1:] {
		key, value, _ := strings.Cut(w, "=")
		switch key {
		case "connect":
			req.Stage, req.Rcpt = abi.StageConnect, ""
		case "to":
			req.Rcpt = value
		case "name":
			req.ClientName, req.ClientNameResult = value, "pass"
		default:
			t.Fatalf("README.md:%d: unknown word %q", line, w)
		}
	}
	opts := []sdktest.Option{sdktest.Domains("your-domain.test")}
	for _, a := range strings.Fields(answers) {
		zone, code, ok := strings.Cut(a, "=")
		if !ok {
			t.Fatalf("README.md:%d: %q is not list=ADDRESS", line, a)
		}
		opts = append(opts, sdktest.Record(abi.TypeA, reversed(ip)+"."+zone, code))
	}
	p, err := sdktest.Configure(&plugin{}, config, opts...)
	if err != nil {
		t.Fatalf("README.md:%d: %v", line, err)
	}
	v, err := p.Try(req)
	if err != nil {
		t.Fatalf("README.md:%d: %v", line, err)
	}
	return sdktest.Describe(v)
}

// Each ```toml block of the README configures the plugin, and the table
// that follows says what it does with each client.
func TestReadmeExamples(t *testing.T) {
	examples := sdktest.ReadmeExamples(t, "README.md")
	if len(examples) < 3 {
		t.Fatalf("found %d toml blocks in README.md, want at least 3", len(examples))
	}
	checked := 0
	for _, e := range examples {
		config := e.PluginConfig(t, "dnsbl")
		if _, err := sdktest.Configure(&plugin{}, config); err != nil {
			t.Errorf("README.md:%d: does not configure: %v", e.Line, err)
			continue
		}
		for _, r := range e.Rows {
			if len(r.Cells) != 3 {
				t.Fatalf("README.md:%d: an example row needs three cells", r.Line)
			}
			if got := row(t, r.Line, config, r.Cells[0], r.Cells[1]); got != r.Cells[2] {
				t.Errorf("README.md:%d: the plugin answers %q, the README says %q", r.Line, got, r.Cells[2])
			}
			checked++
		}
	}
	if checked < 15 {
		t.Errorf("checked %d rows of the README, want at least 15", checked)
	}
}
