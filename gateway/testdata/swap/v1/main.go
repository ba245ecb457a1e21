// Command v1 is version 1 of the plugin the hot-swap tests replace while
// mail flows: it routes every recipient to me@dest.test and tags the
// message with its version, so that each delivered message says which
// chain it went through.
package main

import (
	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

type tagger struct{}

func (tagger) Configure(c *sdk.Config) error {
	c.Permit(abi.MaySetDestination | abi.MayAddHeaders)
	return nil
}

func (tagger) Rcpt(*sdk.Request) sdk.Verdict {
	return sdk.Continue().WithDestination("me@dest.test").AddHeader("X-Swap-Version", "1")
}

func init() { sdk.Register(tagger{}) }

func main() {}
