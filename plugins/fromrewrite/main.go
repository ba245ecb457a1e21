// Command fromrewrite is the Sluice plugin that rewrites the From field of
// mail that would fail its author's DMARC policy once forwarded, and routes
// the replies back: see README.md.
package main

import (
	"github.com/sluice-mail/sluice/sdk"
)

// plugin adapts a rewriter to the SDK: it builds the rewriter from its
// config, routes reply addresses at rcpt and rewrites From at data.
type plugin struct {
	rewriter *rewriter
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	r, err := newRewriter(s, c.Domains)
	if err != nil {
		return err
	}
	p.rewriter = r
	c.Permit(r.permissions())
	return nil
}

func (p *plugin) Rcpt(req *sdk.Request) sdk.Verdict { return p.rewriter.route(req.Rcpt) }

func (p *plugin) Data(req *sdk.Request) sdk.Verdict { return p.rewriter.decide(req) }

func init() { sdk.Register(&plugin{}) }

func main() {}
