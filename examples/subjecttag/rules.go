package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// settings is the plugin's [plugin.config] table.
type settings struct {
	Rules []ruleSettings `toml:"rule"`
}

// ruleSettings is one [[plugin.config.rule]]: its conditions, all of which
// must hold, and what it does.
type ruleSettings struct {
	Tag     string `toml:"tag"`
	Subject *bool  `toml:"subject"` // prefix the Subject with the tag; default true
	Header  string `toml:"header"`  // add this field with the tag as its value

	Sender    []string `toml:"sender"`     // the envelope sender is one of these
	NotSender []string `toml:"not_sender"` // ... and none of these
	Rcpt      []string `toml:"rcpt"`       // a recipient is one of these
	DMARC     []string `toml:"dmarc"`      // the DMARC result is one of these
	HasHeader string   `toml:"has_header"` // the message has a field of this name
}

// rule is a checked ruleSettings.
type rule struct {
	tag                     string
	subject                 bool
	header                  string
	sender, notSender, rcpt []pattern
	dmarc                   []string
	hasHeader               string
}

// pattern is an address, or a domain that also matches its subdomains.
type pattern string

func (p pattern) match(addr string) bool {
	addr = strings.ToLower(addr)
	if strings.Contains(string(p), "@") {
		return addr == string(p)
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	domain := addr[at+1:]
	return domain == string(p) || strings.HasSuffix(domain, "."+string(p))
}

func anyMatch(ps []pattern, addr string) bool {
	return slices.ContainsFunc(ps, func(p pattern) bool { return p.match(addr) })
}

func patterns(key string, in []string) ([]pattern, error) {
	out := make([]pattern, len(in))
	for i, s := range in {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" || strings.ContainsAny(s, " <>*") || strings.HasPrefix(s, "@") || strings.HasSuffix(s, "@") {
			return nil, fmt.Errorf("%s: %q is neither an address nor a domain", key, in[i])
		}
		out[i] = pattern(s)
	}
	return out, nil
}

var dmarcResults = []string{"pass", "fail", "none", "temperror", "permerror"}

func newRule(n int, s ruleSettings) (*rule, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("rule %d: %s", n, fmt.Sprintf(format, args...))
	}
	r := &rule{tag: strings.TrimSpace(s.Tag), subject: s.Subject == nil || *s.Subject, header: s.Header, hasHeader: s.HasHeader}
	if r.tag == "" || strings.ContainsFunc(r.tag, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return nil, fail("tag must be a line of text")
	}
	if r.header != "" && !strings.HasPrefix(strings.ToLower(r.header), "x-") {
		return nil, fail("header %q: add an X- field, not one that means something to mail software", r.header)
	}
	if !r.subject && r.header == "" {
		return nil, fail("with subject = false, set header: the rule would do nothing")
	}
	var err error
	if r.sender, err = patterns("sender", s.Sender); err != nil {
		return nil, fail("%v", err)
	}
	if r.notSender, err = patterns("not_sender", s.NotSender); err != nil {
		return nil, fail("%v", err)
	}
	if r.rcpt, err = patterns("rcpt", s.Rcpt); err != nil {
		return nil, fail("%v", err)
	}
	for _, d := range s.DMARC {
		if !slices.Contains(dmarcResults, d) {
			return nil, fail("dmarc %q is not one of %s", d, strings.Join(dmarcResults, ", "))
		}
	}
	r.dmarc = s.DMARC
	return r, nil
}

// tagger holds the rules in order.
type tagger struct {
	rules []*rule
}

func newTagger(s settings) (*tagger, error) {
	if len(s.Rules) == 0 {
		return nil, errors.New("no [[plugin.config.rule]]: the plugin would tag nothing")
	}
	t := &tagger{}
	for i, rs := range s.Rules {
		r, err := newRule(i+1, rs)
		if err != nil {
			return nil, err
		}
		t.rules = append(t.rules, r)
	}
	return t, nil
}

// permissions are the changes the rules make.
func (t *tagger) permissions() abi.Permissions {
	var p abi.Permissions
	for _, r := range t.rules {
		if r.subject {
			p |= abi.MayAddHeaders | abi.MayRemoveHeaders
		}
		if r.header != "" {
			p |= abi.MayAddHeaders
		}
	}
	return p
}

// matches reports whether every condition of r holds.
func (r *rule) matches(req *sdk.Request) (bool, error) {
	if len(r.sender) > 0 && !anyMatch(r.sender, req.MailFrom) {
		return false, nil
	}
	if anyMatch(r.notSender, req.MailFrom) {
		return false, nil
	}
	if len(r.rcpt) > 0 && !slices.ContainsFunc(req.Rcpts, func(a string) bool { return anyMatch(r.rcpt, a) }) {
		return false, nil
	}
	if len(r.dmarc) > 0 && !slices.Contains(r.dmarc, req.Auth.DMARC.Result) {
		return false, nil
	}
	if r.hasHeader != "" {
		_, err := sdk.Header(r.hasHeader)
		if errors.Is(err, sdk.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// tag applies the first rule that matches.
func (t *tagger) tag(req *sdk.Request) sdk.Verdict {
	for _, r := range t.rules {
		ok, err := r.matches(req)
		if err != nil {
			return t.failed(err)
		}
		if ok {
			return r.apply()
		}
	}
	return sdk.Continue()
}

func (r *rule) apply() sdk.Verdict {
	v := sdk.Continue()
	if r.header != "" {
		v = v.AddHeader(r.header, r.tag)
	}
	if !r.subject {
		return v
	}
	subject, err := sdk.Header("Subject")
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		sdk.Log(abi.LogWarn, "subjecttag: reading the Subject: "+err.Error())
		return v
	}
	if strings.Contains(subject, r.tag) {
		return v // already tagged, as in a reply
	}
	// The gateway removes fields from the message as received and adds
	// new ones on top, folding long values.
	return v.RemoveHeader("Subject").AddHeader("Subject", strings.TrimSpace(r.tag+" "+subject))
}

// failed is the answer when the message cannot be read: most likely the
// plugin lacks the headers capability. Tagging is cosmetic, so the mail
// goes on untagged; the log says why.
func (t *tagger) failed(err error) sdk.Verdict {
	sdk.Log(abi.LogError, "subjecttag: "+err.Error())
	return sdk.Continue()
}
