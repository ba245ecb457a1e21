// Command scripted is a test plugin: its config says what verdict it gives
// at every stage, and some recipients make it misbehave on purpose.
package main

import (
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

type settings struct {
	Refuse      string `toml:"refuse"`  // refuse the config with this text
	Verdict     string `toml:"verdict"` // continue, accept, reject, tempfail, discard, quarantine
	Code        int    `toml:"code"`
	Enhanced    string `toml:"enhanced"`
	Text        string `toml:"text"`
	Destination string `toml:"destination"`
	// Destinations, if set, are several (sdk.Verdict.WithDestinations).
	Destinations []string `toml:"destinations"`
	// Header is "Name: value" to add; {client_name}, {client_name_result},
	// {authenticated_user} and {findings} (plugin:SYMBOL=score, ...) are
	// the request's, in Text too.
	Header       string   `toml:"header"`
	Finding      string   `toml:"finding"`
	FindingScore float64  `toml:"finding_score"` // default 1.5
	Permit       []string `toml:"permit"`        // accept, reject, ..., destination, add_headers, remove_headers
	// Pattern is a regular expression compiled at configure time, as a
	// router compiles its users' patterns: Go's parser recurses on it.
	Pattern string `toml:"pattern"`
}

var permissions = map[string]abi.Permissions{
	"accept": abi.MayAccept, "reject": abi.MayReject, "tempfail": abi.MayTempfail,
	"discard": abi.MayDiscard, "quarantine": abi.MayQuarantine, "destination": abi.MaySetDestination,
	"add_headers": abi.MayAddHeaders, "remove_headers": abi.MayRemoveHeaders,
}

type scripted struct {
	s     settings
	keep  [][]byte
	calls int
}

func (p *scripted) Configure(c *sdk.Config) error {
	if err := c.Decode(&p.s); err != nil {
		return err
	}
	if p.s.Refuse != "" {
		return errors.New(p.s.Refuse)
	}
	if _, err := regexp.Compile(p.s.Pattern); err != nil {
		return err
	}
	for _, name := range p.s.Permit {
		c.Permit(permissions[name])
	}
	return nil
}

func (p *scripted) verdict(req *sdk.Request) sdk.Verdict {
	p.calls++
	if v, misbehaved := p.misbehave(req); misbehaved {
		return v
	}
	s := p.s
	expand := strings.NewReplacer("{client_name}", req.ClientName, "{client_name_result}", req.ClientNameResult,
		"{authenticated_user}", req.AuthenticatedUser, "{findings}", findings(req))
	s.Text = expand.Replace(s.Text)
	var v sdk.Verdict
	switch s.Verdict {
	case "accept":
		v = sdk.Accept()
	case "reject":
		v = sdk.Reject(uint16(s.Code), s.Enhanced, s.Text)
	case "tempfail":
		v = sdk.Tempfail(uint16(s.Code), s.Enhanced, s.Text)
	case "discard":
		v = sdk.Discard()
		v.Text = s.Text
	case "quarantine":
		v = sdk.Quarantine(s.Text)
	}
	if s.Destination != "" {
		v = v.WithDestination(s.Destination)
	}
	if len(s.Destinations) > 0 {
		v = v.WithDestinations(s.Destinations...)
	}
	if name, value, ok := strings.Cut(s.Header, ": "); ok {
		v = v.AddHeader(name, expand.Replace(value))
	}
	if s.Finding != "" {
		score := s.FindingScore
		if score == 0 {
			score = 1.5
		}
		v = v.Finding(s.Finding, score)
	}
	return v
}

// findings writes the findings of a request: plugin:SYMBOL=score, ...
func findings(req *sdk.Request) string {
	var b strings.Builder
	for i, f := range req.Findings {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Plugin + ":" + f.Symbol + "=" + strconv.FormatFloat(f.Score, 'g', -1, 64))
	}
	return b.String()
}

// misbehave does what the recipient's local part asks for.
func (p *scripted) misbehave(req *sdk.Request) (sdk.Verdict, bool) {
	local, _, _ := strings.Cut(req.Rcpt, "@")
	switch local {
	case "loop":
		for {
		}
	case "sleep":
		time.Sleep(time.Hour)
	case "slow": // healthy but slow, as a lookup of that round trip would be
		time.Sleep(30 * time.Millisecond)
		return sdk.Continue(), true
	case "oom":
		for {
			p.keep = append(p.keep, make([]byte, 1<<20))
		}
	case "fatal": // an error the Go runtime cannot recover from: a trap
		var mu sync.Mutex
		mu.Unlock()
	case "exit":
		os.Exit(3)
	case "panic":
		panic("scripted panic")
	case "badcode":
		return sdk.Reject(250, "", "not an error code"), true
	case "inject":
		return sdk.Continue().AddHeader("X-Test", "a\r\nBcc: victim@example.test"), true
	case "log":
		sdk.Log(abi.LogInfo, "hello from "+req.Rcpt)
		return sdk.Continue(), true
	case "biglog":
		sdk.Log(abi.LogWarn, strings.Repeat("x", 100000))
		return sdk.Continue(), true
	case "count": // how many requests this instance has seen: 1 on a fresh one
		return sdk.Continue().Finding("calls", float64(p.calls)), true
	}
	return sdk.Verdict{}, false
}

func (p *scripted) Connect(r *sdk.Request) sdk.Verdict { return p.verdict(r) }
func (p *scripted) Helo(r *sdk.Request) sdk.Verdict    { return p.verdict(r) }
func (p *scripted) Mail(r *sdk.Request) sdk.Verdict    { return p.verdict(r) }
func (p *scripted) Rcpt(r *sdk.Request) sdk.Verdict    { return p.verdict(r) }
func (p *scripted) Data(r *sdk.Request) sdk.Verdict    { return p.verdict(r) }
func (p *scripted) Close(r *sdk.Request)               { p.verdict(r) }

func init() { sdk.Register(&scripted{}) }

func main() {}
