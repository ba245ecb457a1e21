// Command greylist is the Sluice plugin that defers the first attempt of
// each (client network, sender, recipient) and accepts the retry: see
// README.md.
package main

import (
	"github.com/sluice-mail/sluice/sdk"
)

// plugin adapts a greylist to the SDK: it builds the greylist from its
// config and asks it at rcpt and data; it decides at one of them.
type plugin struct {
	greylist *greylist
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	g, err := newGreylist(s)
	if err != nil {
		return err
	}
	p.greylist = g
	c.Permit(g.permissions())
	return nil
}

func (p *plugin) Rcpt(req *sdk.Request) sdk.Verdict { return p.greylist.decide(req) }
func (p *plugin) Data(req *sdk.Request) sdk.Verdict { return p.greylist.decide(req) }

func init() { sdk.Register(&plugin{}) }

func main() {}
