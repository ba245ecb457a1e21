package main

import (
	"testing"
	"time"

	"github.com/sluice-mail/sluice/plugins/internal/words"
	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// attempt builds the request that a README row's words describe.
func attempt(t *testing.T, line int, text string) *sdk.Request {
	t.Helper()
	req, err := words.Request(text)
	if err != nil {
		t.Fatalf("README.md:%d: %v", line, err)
	}
	return req
}

// Each ```toml block of the README configures the plugin, and the table
// that follows it is a sequence of attempts and what the plugin answers.
func TestReadmeExamples(t *testing.T) {
	sdktest.ReadmeTest{Plugin: "ratelimit", Examples: 5, Rows: 27, Cells: 3}.Run(t, func(config string) (func(sdktest.Row) (string, string), error) {
		clk := &clock{start}
		p := &plugin{}
		sp, err := sdktest.Configure(p, config, sdktest.Clock(clk.Now))
		if err != nil {
			return nil, err
		}
		p.limiter.now = clk.Now
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
