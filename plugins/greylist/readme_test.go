package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// attempt builds the request that the README's words describe: a stage,
// then key=value words.
func attempt(t *testing.T, line int, words string) *sdk.Request {
	t.Helper()
	f := strings.Fields(words)
	req := &sdk.Request{SessionID: "readme"}
	switch f[0] {
	case "rcpt":
		req.Stage = abi.StageRcpt
	case "data":
		req.Stage = abi.StageData
	default:
		t.Fatalf("README.md:%d: unknown stage %q", line, f[0])
	}
	for _, w := range f[1:] {
		key, value, ok := strings.Cut(w, "=")
		if !ok {
			t.Fatalf("README.md:%d: %q is not key=value", line, w)
		}
		switch key {
		case "ip":
			req.ClientIP = value
		case "from":
			req.MailFrom = strings.Trim(value, "<>")
		case "to":
			req.Rcpts = strings.Split(value, ",")
			if req.Stage == abi.StageRcpt {
				req.Rcpt, req.Rcpts = req.Rcpts[0], nil
			}
		case "name":
			req.ClientName, req.ClientNameResult = value, "pass"
		case "spf":
			req.Auth.SPF = abi.SPF{Result: "pass", Domain: value}
		case "dkim":
			req.Auth.DKIM = append(req.Auth.DKIM, abi.DKIM{Result: "pass", Domain: value})
		default:
			t.Fatalf("README.md:%d: unknown key %q", line, key)
		}
	}
	return req
}

// Each ```toml block of the README configures the plugin, and the table
// that follows it is a sequence of attempts and what the plugin answers.
func TestReadmeExamples(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	sdktest.ReadmeTest{Plugin: "greylist", Examples: 3, Rows: 15, Cells: 3}.Run(t, func(config string) (func(sdktest.Row) (string, string), error) {
		clk := &clock{start}
		p := &plugin{}
		sp, err := sdktest.Configure(p, config, sdktest.Clock(clk.Now))
		if err != nil {
			return nil, err
		}
		p.greylist.now = clk.Now
		return func(r sdktest.Row) (string, string) {
			var at sdk.Duration
			if r.Cells[0] != "0s" {
				if err := at.UnmarshalText([]byte(r.Cells[0])); err != nil {
					t.Fatalf("README.md:%d: %v", r.Line, err)
				}
			}
			clk.now = start.Add(time.Duration(at))
			return reply(sp.Handle(t, attempt(t, r.Line, r.Cells[1]))), r.Cells[2]
		}, nil
	})
}
