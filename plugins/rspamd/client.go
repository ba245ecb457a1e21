package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// settings is the plugin's config table.
type settings struct {
	// URL is where rspamd's normal worker listens; /checkv2 is added.
	URL string `toml:"url"`
	// OnError is what a message gets when rspamd cannot be asked: "skip"
	// (the default) or "tempfail".
	OnError string `toml:"on_error"`
	// Findings is what becomes findings: "symbols" (the default), "score"
	// or "none".
	Findings string `toml:"findings"`
	// Actions maps rspamd's actions to the plugin's.
	Actions actions `toml:"actions"`
	// SettingsID asks rspamd for one of its settings (Settings-ID).
	SettingsID string `toml:"settings_id"`
}

// actions maps each action rspamd can answer, named as in rspamd's
// actions.conf, to what the plugin does.
type actions struct {
	Reject         string `toml:"reject"`
	SoftReject     string `toml:"soft_reject"`
	RewriteSubject string `toml:"rewrite_subject"`
	AddHeader      string `toml:"add_header"`
	Greylist       string `toml:"greylist"`
}

// What the plugin can do with an rspamd action.
const (
	doReject     = "reject"     // 550 5.7.1
	doTempfail   = "tempfail"   // 451 4.7.1
	doQuarantine = "quarantine" // the gateway marks the message
	doHeader     = "header"     // adds X-Spam: Yes
	doSubject    = "subject"    // rewrites Subject as rspamd says, and adds X-Spam: Yes
	doContinue   = "continue"
)

var doWords = []string{doReject, doTempfail, doQuarantine, doHeader, doSubject, doContinue}

// spamHeader is the field rspamd's own proxy adds to spam it passes on.
const spamHeader = "X-Spam"

// client is the validated configuration.
type client struct {
	url        string // .../checkv2
	hostname   string // the gateway's, sent as MTA-Name
	tempfail   bool   // on_error = "tempfail"
	findings   string
	do         map[string]string // rspamd action → what to do
	settingsID string
}

func newClient(s settings, hostname string) (*client, error) {
	c := &client{hostname: hostname, findings: s.Findings, settingsID: s.SettingsID}
	base := s.URL
	if base == "" {
		base = "http://127.0.0.1:11333"
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, &sdk.SettingError{Key: "url", Err: fmt.Errorf("%q is not an http:// or https:// URL of rspamd's normal worker, like \"http://127.0.0.1:11333\"", s.URL)}
	}
	c.url = strings.TrimSuffix(base, "/") + "/checkv2"
	switch s.OnError {
	case "", "skip":
	case "tempfail":
		c.tempfail = true
	default:
		return nil, &sdk.SettingError{Key: "on_error", Err: fmt.Errorf("%q: must be \"skip\" or \"tempfail\"", s.OnError)}
	}
	switch s.Findings {
	case "":
		c.findings = "symbols"
	case "symbols", "score", "none":
	default:
		return nil, &sdk.SettingError{Key: "findings", Err: fmt.Errorf("%q: must be \"symbols\", \"score\" or \"none\"", s.Findings)}
	}
	c.do = map[string]string{"no action": doContinue}
	for _, a := range []struct{ key, rspamd, set, def string }{
		{"reject", "reject", s.Actions.Reject, doReject},
		{"soft_reject", "soft reject", s.Actions.SoftReject, doTempfail},
		{"rewrite_subject", "rewrite subject", s.Actions.RewriteSubject, doSubject},
		{"add_header", "add header", s.Actions.AddHeader, doHeader},
		{"greylist", "greylist", s.Actions.Greylist, doContinue},
	} {
		if a.set == "" {
			a.set = a.def
		}
		if !slices.Contains(doWords, a.set) {
			return nil, &sdk.SettingError{Key: "actions." + a.key, Err: fmt.Errorf("%q: must be one of %s", a.set, strings.Join(doWords, ", "))}
		}
		c.do[a.rspamd] = a.set
	}
	return c, nil
}

// permissions declares what this configuration can do, and no more.
func (c *client) permissions() abi.Permissions {
	var p abi.Permissions
	if c.tempfail {
		p |= abi.MayTempfail
	}
	for _, do := range c.do {
		switch do {
		case doReject:
			p |= abi.MayReject
		case doTempfail:
			p |= abi.MayTempfail
		case doQuarantine:
			p |= abi.MayQuarantine
		case doHeader:
			p |= abi.MayAddHeaders
		case doSubject:
			p |= abi.MayAddHeaders | abi.MayRemoveHeaders
		}
	}
	return p
}

// result is what /checkv2 answers, the parts the plugin uses.
type result struct {
	Action        string            `json:"action"`
	Score         float64           `json:"score"`
	RequiredScore float64           `json:"required_score"`
	Subject       string            `json:"subject"`
	Symbols       map[string]symbol `json:"symbols"`
	Messages      map[string]any    `json:"messages"`
}

type symbol struct {
	Name  string  `json:"name"`
	Score float64 `json:"score"`
}

// decide asks rspamd about the message and answers what its action maps
// to, with its symbols as findings.
func (c *client) decide(req *sdk.Request) sdk.Verdict {
	r, err := c.check(req)
	if err != nil {
		sdk.Log(4, "rspamd: "+err.Error())
		if c.tempfail {
			return sdk.Tempfail(451, "4.3.0", "Cannot check the message for spam now, try again later")
		}
		return sdk.Continue()
	}
	return c.verdict(r)
}

// verdict maps rspamd's result to the plugin's answer.
func (c *client) verdict(r *result) sdk.Verdict {
	do, ok := c.do[r.Action]
	if !ok {
		sdk.Log(4, fmt.Sprintf("rspamd: unknown action %q, taken as no action", r.Action))
		do = doContinue
	}
	smtp, _ := r.Messages["smtp_message"].(string)
	var v sdk.Verdict
	switch do {
	case doReject:
		v = sdk.Reject(550, "5.7.1", replyText(smtp, "Spam message rejected"))
	case doTempfail:
		v = sdk.Tempfail(451, "4.7.1", replyText(smtp, "Try again later"))
	case doQuarantine:
		v = sdk.Quarantine(fmt.Sprintf("rspamd: %s (score %s of %s)", r.Action, score(r.Score), score(r.RequiredScore)))
	case doHeader:
		v = sdk.Continue().AddHeader(spamHeader, "Yes")
	case doSubject:
		v = sdk.Continue().AddHeader(spamHeader, "Yes")
		if s := clean(r.Subject); s != "" {
			v = v.RemoveHeader("Subject").AddHeader("Subject", s)
		}
	default:
		v = sdk.Continue()
	}
	switch c.findings {
	case "symbols":
		names := make([]string, 0, len(r.Symbols))
		for name, s := range r.Symbols {
			if s.Score != 0 && clean(name) == name && name != "" {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		for _, name := range names {
			v = v.Finding(name, r.Symbols[name].Score)
		}
	case "score":
		v = v.Finding("RSPAMD", r.Score)
	}
	return v
}

// check sends the message and its envelope to rspamd's /checkv2, with the
// fields rspamd reads instead of guessing from the message (its HTTP
// protocol: IP, Helo, From, Rcpt, Hostname, Queue-Id).
func (c *client) check(req *sdk.Request) (*result, error) {
	head, err := sdk.HeaderBlock()
	if err != nil {
		return nil, err
	}
	body, err := sdk.ReadBody()
	if err != nil {
		return nil, err
	}
	msg := make([]byte, 0, len(head)+2+len(body))
	msg = append(append(append(msg, head...), "\r\n"...), body...)
	h := []sdk.Field{{Name: "Queue-Id", Value: req.SessionID}}
	add := func(name, value string) {
		if value != "" {
			h = append(h, sdk.Field{Name: name, Value: value})
		}
	}
	add("IP", req.ClientIP)
	add("Helo", req.Helo)
	add("From", req.MailFrom)
	for _, rcpt := range req.Rcpts {
		add("Rcpt", rcpt)
	}
	switch req.ClientNameResult {
	case "pass":
		add("Hostname", req.ClientName)
	case "none", "fail": // rspamd's word for a client without a verified name
		add("Hostname", "unknown")
	}
	add("MTA-Name", c.hostname)
	add("Settings-ID", c.settingsID)
	resp, err := sdk.HTTP(&sdk.HTTPRequest{Method: "POST", URL: c.url, Header: h, Body: msg})
	if err != nil {
		return nil, err
	}
	if resp.Status != 200 {
		return nil, fmt.Errorf("%s answered HTTP %d: %s", c.url, resp.Status, clean(string(resp.Body[:min(len(resp.Body), 200)])))
	}
	var r result
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		return nil, fmt.Errorf("%s answered what is not rspamd's JSON: %v", c.url, err)
	}
	if r.Action == "" {
		return nil, errors.New(c.url + " answered no action")
	}
	return &r, nil
}

// replyText is rspamd's SMTP message if it gave one, else def.
func replyText(smtp, def string) string {
	if s := clean(smtp); s != "" {
		return s
	}
	return def
}

// clean keeps what may go into a reply or a header: no control
// characters, at most 200 bytes.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return strings.TrimSpace(s)
}

func score(f float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
}
