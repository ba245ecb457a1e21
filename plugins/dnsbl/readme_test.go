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
	sdktest.ReadmeTest{Plugin: "dnsbl", Examples: 3, Rows: 15, Cells: 3}.Run(t, func(config string) (func(sdktest.Row) (string, string), error) {
		_, err := sdktest.Configure(&plugin{}, config)
		return func(r sdktest.Row) (string, string) {
			return row(t, r.Line, config, r.Cells[0], r.Cells[1]), r.Cells[2]
		}, err
	})
}
