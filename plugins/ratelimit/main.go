// Command ratelimit is the Sluice plugin that defers mail over the rates
// you allow per client, sender domain, authenticated domain and
// recipient: see README.md.
package main

import (
	"github.com/sluice-mail/sluice/sdk"
)

// plugin adapts a limiter to the SDK: it builds the limiter from its
// config and asks it at each stage where a limit is decided.
type plugin struct {
	limiter *limiter
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	l, err := newLimiter(s)
	if err != nil {
		return err
	}
	p.limiter = l
	c.Permit(l.permissions())
	return nil
}

func (p *plugin) Mail(req *sdk.Request) sdk.Verdict { return p.limiter.decide(req) }
func (p *plugin) Rcpt(req *sdk.Request) sdk.Verdict { return p.limiter.decide(req) }
func (p *plugin) Data(req *sdk.Request) sdk.Verdict { return p.limiter.decide(req) }

func init() { sdk.Register(&plugin{}) }

func main() {}
