// Command rspamd is the Sluice plugin that has rspamd scan each message
// and turns its action and symbols into the plugin's verdict and
// findings: see README.md.
package main

import (
	"github.com/sluice-mail/sluice/sdk"
)

// plugin adapts a client to the SDK: it builds the client from its config
// and asks rspamd at data, when the whole message has arrived.
type plugin struct {
	client *client
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	cl, err := newClient(s, c.Hostname)
	if err != nil {
		return err
	}
	// Refused now rather than at the first message: a URL that the
	// plugin's http_hosts do not allow.
	if err := sdk.CheckURL(cl.url); err != nil {
		return &sdk.SettingError{Key: "url", Err: err}
	}
	p.client = cl
	c.Permit(cl.permissions())
	return nil
}

func (p *plugin) Data(req *sdk.Request) sdk.Verdict { return p.client.decide(req) }

func init() { sdk.Register(&plugin{}) }

func main() {}
