// Command dmarc is the Sluice plugin that enforces the DMARC policies that
// senders' domains publish: see README.md.
package main

import (
	"github.com/sluice-mail/sluice/sdk"
)

// plugin adapts a policy to the SDK: it builds the policy from its config
// and applies it at data, when the gateway has checked the message.
type plugin struct {
	policy *policy
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	pol, err := newPolicy(s)
	if err != nil {
		return err
	}
	p.policy = pol
	c.Permit(pol.permissions())
	return nil
}

func (p *plugin) Data(req *sdk.Request) sdk.Verdict { return p.policy.decide(req) }

func init() { sdk.Register(&plugin{}) }

func main() {}
