// Command subjecttag is an example Sluice plugin that tags mail matching
// rules, in its Subject or in an X- header field: see README.md.
package main

import (
	"errors"
	"fmt"

	"github.com/sluice-mail/sluice/sdk"
)

type plugin struct {
	tagger *tagger
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	t, err := newTagger(s)
	if err != nil {
		return err
	}
	// Outside the data stage a granted headers capability answers
	// ErrStage and a withheld one ErrDenied: refuse the load rather than
	// leave every message untagged.
	if _, err := sdk.Header("Subject"); errors.Is(err, sdk.ErrDenied) {
		return fmt.Errorf("grant it the headers capability: capabilities = [\"headers\"]")
	}
	p.tagger = t
	c.Permit(t.permissions())
	return nil
}

func (p *plugin) Data(req *sdk.Request) sdk.Verdict { return p.tagger.tag(req) }

func init() { sdk.Register(&plugin{}) }

func main() {}
