// Command attachblock is an example Sluice plugin that refuses messages
// carrying attachments of the types or file name extensions you list: see
// README.md.
package main

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// settings is the plugin's [plugin.config] table.
type settings struct {
	Extensions *[]string `toml:"extensions"` // nil: defaultExtensions
	Types      []string  `toml:"types"`
	Action     string    `toml:"action"` // reject (default) or quarantine
}

// defaultExtensions are programs and scripts that Windows runs when they
// are opened, and disk images that hide them: what mail should not carry.
var defaultExtensions = []string{
	"exe", "com", "scr", "pif", "bat", "cmd", "msi", "lnk", "hta", "cpl",
	"js", "jse", "vbs", "vbe", "wsf", "wsh", "ps1", "jar", "iso", "img",
}

type plugin struct {
	policy     policy
	quarantine bool
}

func (p *plugin) Configure(c *sdk.Config) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	exts := defaultExtensions
	if s.Extensions != nil {
		exts = *s.Extensions
	}
	for _, e := range exts {
		e = strings.ToLower(strings.TrimPrefix(e, "."))
		if e == "" || strings.ContainsFunc(e, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }) {
			return fmt.Errorf("extensions: %q is not a file name extension (letters and digits)", e)
		}
		p.policy.extensions = append(p.policy.extensions, e)
	}
	for _, t := range s.Types {
		t = strings.ToLower(t)
		major, minor, ok := strings.Cut(t, "/")
		if !ok || major == "" || minor == "" || strings.ContainsAny(t, " ;\t*") {
			return fmt.Errorf("types: %q is not a media type such as application/x-msdownload", t)
		}
		p.policy.types = append(p.policy.types, t)
	}
	switch s.Action {
	case "", "reject":
		c.Permit(abi.MayReject | abi.MayTempfail)
	case "quarantine":
		p.quarantine = true
		c.Permit(abi.MayQuarantine | abi.MayTempfail)
	default:
		return fmt.Errorf("action %q is neither reject nor quarantine", s.Action)
	}
	// Outside the data stage a granted capability answers ErrStage and a
	// withheld one ErrDenied: refuse the load rather than let every
	// attachment through.
	_, herr := sdk.Header("Content-Type")
	_, berr := sdk.BodySize()
	if errors.Is(herr, sdk.ErrDenied) || errors.Is(berr, sdk.ErrDenied) {
		return errors.New(`grant it the headers and body capabilities: capabilities = ["headers", "body"]`)
	}
	return nil
}

func (p *plugin) Data(req *sdk.Request) sdk.Verdict {
	fields, err := sdk.Headers()
	if err != nil {
		return p.unreadable(err)
	}
	header := textproto.MIMEHeader{}
	for _, f := range fields {
		header.Add(f.Name, f.Value)
	}
	what, err := p.policy.blocked(header, sdk.Body())
	if what == "" {
		if err != nil {
			// Mail programs read what Go's MIME parser cannot; the log
			// says which messages went unchecked.
			sdk.Log(abi.LogWarn, "attachblock: could not read the whole MIME structure: "+err.Error())
		}
		return sdk.Continue()
	}
	reason := "it carries an attachment of " + what + ", which is not accepted here"
	if what[0] == '.' {
		reason = "it carries a " + what + " attachment, which is not accepted here"
	}
	if p.quarantine {
		return sdk.Quarantine("attachblock: "+reason).Finding("ATTACHMENT_BLOCKED", 1)
	}
	return sdk.Reject(550, "5.7.1", "Message refused: "+reason).Finding("ATTACHMENT_BLOCKED", 1)
}

// unreadable answers when the message cannot be read at all; the load
// checked the capabilities, so the host is failing: defer the message
// rather than let it through unchecked.
func (p *plugin) unreadable(err error) sdk.Verdict {
	sdk.Log(abi.LogError, "attachblock: "+err.Error())
	return sdk.Tempfail(451, "4.3.0", "The message could not be checked for attachments, try again later")
}

func init() { sdk.Register(&plugin{}) }

func main() {}
