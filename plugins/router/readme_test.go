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
	examples := sdktest.ReadmeExamples(t, "README.md")
	if len(examples) < 3 {
		t.Fatalf("found %d toml blocks in README.md, want at least 3", len(examples))
	}
	routed := 0
	for _, e := range examples {
		p, c, err := configure(t, e.PluginConfig(t, "router"))
		if err != nil {
			t.Errorf("README.md:%d: does not configure: %v", e.Line, err)
			continue
		}
		for _, r := range e.Rows {
			if len(r.Cells) != 2 {
				t.Fatalf("README.md:%d: a route table row needs two cells", r.Line)
			}
			rcpt, result := r.Cells[0], r.Cells[1]
			v := p.Rcpt(&sdk.Request{Stage: abi.StageRcpt, Rcpt: rcpt, UTF8: true})
			if got := describe(v); got != result {
				t.Errorf("README.md:%d: %s routes to %q, the README says %q", e.Line, rcpt, got, result)
			}
			if !c.Permissions().Allows((*abi.Verdict)(&v)) {
				t.Errorf("README.md:%d: %s: verdict outside the declared permissions", e.Line, rcpt)
			}
			routed++
		}
	}
	if routed < 10 {
		t.Errorf("checked %d routes from the README, want at least 10", routed)
	}
}
