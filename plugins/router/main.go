// Command router is the Sluice plugin that maps custom addresses to real
// mailboxes: see README.md.
package main

import (
	"github.com/sluice-mail/sluice/sdk"
)

// plugin adapts a routing table to the SDK: it builds the table from its
// config and consults it at rcpt.
type plugin struct {
	table *table
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	t, err := newTable(s, c.Domains)
	if err != nil {
		return err
	}
	p.table = t
	c.Permit(t.perms)
	return nil
}

func (p *plugin) Rcpt(req *sdk.Request) sdk.Verdict { return p.table.route(req.Rcpt, req.UTF8) }

func init() { sdk.Register(&plugin{}) }

func main() {}
