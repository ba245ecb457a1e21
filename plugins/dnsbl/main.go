// Command dnsbl is the Sluice plugin that checks the client's address
// against DNS blocklists: see README.md.
package main

import (
	"github.com/sluice-mail/sluice/sdk"
)

// plugin adapts a checker to the SDK: it builds the checker from its
// config and consults it at connect or rcpt, where the config says.
type plugin struct {
	checker *checker
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	ch, err := newChecker(s, c.Domains)
	if err != nil {
		return err
	}
	p.checker = ch
	c.Permit(ch.permissions())
	return nil
}

func (p *plugin) Connect(req *sdk.Request) sdk.Verdict { return p.checker.connect(req) }
func (p *plugin) Rcpt(req *sdk.Request) sdk.Verdict    { return p.checker.rcpt(req) }

func init() { sdk.Register(&plugin{}) }

func main() {}
