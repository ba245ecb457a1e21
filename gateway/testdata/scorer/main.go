// Command scorer is a test plugin that only reports findings, as a spam
// checker does, from rules in its config: at mail, when the sender
// contains a text; at rcpt, when the recipient is an address; at data,
// when the Subject (read through the headers host function) contains a
// text.
package main

import (
	"strings"

	"github.com/sluice-mail/sluice/sdk"
)

type rule struct {
	Stage  string  `toml:"stage"` // mail, rcpt or data
	Match  string  `toml:"match"`
	Symbol string  `toml:"symbol"`
	Score  float64 `toml:"score"`
}

type scorer struct {
	Rules []rule `toml:"rule"`
}

func (s *scorer) Configure(c *sdk.Config) error { return c.Decode(s) }

func (s *scorer) findings(stage, text string) sdk.Verdict {
	v := sdk.Continue()
	for _, r := range s.Rules {
		if r.Stage == stage && strings.Contains(text, r.Match) {
			v = v.Finding(r.Symbol, r.Score)
		}
	}
	return v
}

func (s *scorer) Mail(r *sdk.Request) sdk.Verdict { return s.findings("mail", r.MailFrom) }
func (s *scorer) Rcpt(r *sdk.Request) sdk.Verdict { return s.findings("rcpt", r.Rcpt) }

func (s *scorer) Data(r *sdk.Request) sdk.Verdict {
	subject, err := sdk.Header("Subject")
	if err != nil {
		sdk.Log(4, "no subject: "+err.Error())
	}
	return s.findings("data", subject)
}

func init() { sdk.Register(&scorer{}) }

func main() {}
