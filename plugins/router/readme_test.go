package main

import (
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// Each ```toml block of the README configures the router, and the table of
// recipients and results that follows it says where each recipient goes.
func TestReadmeExamples(t *testing.T) {
	sdktest.ReadmeTest{Plugin: "router", Examples: 3, Rows: 10, Cells: 2}.Run(t, func(config string) (func(sdktest.Row) (string, string), error) {
		p, c, err := configure(t, config)
		return func(r sdktest.Row) (string, string) {
			v := p.Rcpt(&sdk.Request{Stage: abi.StageRcpt, Rcpt: r.Cells[0], UTF8: true})
			if !c.Permissions().Allows((*abi.Verdict)(&v)) {
				t.Errorf("README.md:%d: %s: verdict outside the declared permissions", r.Line, r.Cells[0])
			}
			return describe(v), r.Cells[1]
		}, err
	})
}
