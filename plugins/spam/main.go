// Command spam is the Sluice plugin that scores each message with named
// symbols, in rspamd's spirit: see README.md.
package main

import (
	"time"

	"github.com/sluice-mail/sluice/sdk"
)

// plugin adapts a config to the SDK: it builds it from its settings and
// scores each message at data.
type plugin struct {
	config *config
	now    func() time.Time // the clock Date fields are compared with
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	cfg, err := newConfig(s)
	if err != nil {
		return err
	}
	p.config = cfg
	c.Permit(cfg.permissions())
	return nil
}

func (p *plugin) Data(req *sdk.Request) sdk.Verdict {
	now := time.Now
	if p.now != nil {
		now = p.now
	}
	return p.config.score(req, now())
}

func init() { sdk.Register(&plugin{}) }

func main() {}
