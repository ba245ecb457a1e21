package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"golang.org/x/text/unicode/norm"
)

// settings is the plugin's config table.
type settings struct {
	// SubaddressSeparator holds the characters that start a subaddress:
	// with "+", "info+tag@d" falls back to the rule for "info@d".
	SubaddressSeparator string          `toml:"subaddress_separator"`
	Domain              []domainSetting `toml:"domain"`
	Rule                []ruleSetting   `toml:"rule"`
}

// domainSetting is how one domain's local parts are read.
type domainSetting struct {
	Name string `toml:"name"`
	// IgnoreDots makes first.last@ the same address as firstlast@.
	IgnoreDots bool `toml:"ignore_dots"`
	// SubaddressSeparator, if set, replaces the top-level one.
	SubaddressSeparator *string `toml:"subaddress_separator"`
}

// addresses is a forward rule's to: one address, or a list of them, each
// getting a copy.
type addresses []string

// UnmarshalTOML takes a string or a list of strings.
func (a *addresses) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*a = addresses{v}
		return nil
	case []any:
		list := make(addresses, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return errors.New("expected an address or a list of addresses, got a list with something else in it")
			}
			list = append(list, s)
		}
		*a = list
		return nil
	}
	return errors.New("expected an address or a list of addresses")
}

type ruleSetting struct {
	Match    string    `toml:"match"`  // an address, "*@domain", or a wildcard such as "sales-*@domain"
	Regex    string    `toml:"regex"`  // or a regular expression over the whole address
	Action   string    `toml:"action"` // forward, drop or reject
	To       addresses `toml:"to"`
	Code     int       `toml:"code"`
	Enhanced string    `toml:"enhanced"`
	Text     string    `toml:"text"`
}

// The reply for a reject rule that gives none.
const (
	defaultRejectCode = 550
	defaultRejectText = "Recipient address rejected"
)

// table is the routing table. Exact addresses are one map lookup, however
// many there are; patterns are tried in file order, only those that can
// match the recipient's domain.
type table struct {
	exact   map[string]sdk.Verdict // "local@domain", local in its domain's key form
	domains map[string]*domain     // by domain key: its settings, patterns and catch-all
	// other stands for every domain not in domains: the top-level
	// settings, and the patterns that might match anywhere (regular
	// expressions, when the host did not say which domains are ours).
	other domain
	// perms are the actions the rules can take.
	perms abi.Permissions
}

// domain is what the table knows about one domain.
type domain struct {
	set        bool // by a [[domain]] table
	separator  string
	ignoreDots bool
	unicode    string     // the U-label form of its key, or ""
	patterns   []*pattern // in file order
	catchAll   *action
}

// key is a local part as the domain's exact rules are keyed.
func (d *domain) key(form string) string {
	if d.ignoreDots {
		return withoutDots(form)
	}
	return form
}

// action is what a rule does to a recipient it matches.
type action struct {
	n       int // the rule's number in the file, from 1
	verdict sdk.Verdict
	// to, for a forward with captures in its destinations, makes the
	// destinations for each recipient; nil: verdict's are fixed.
	to []*template
}

// result is the verdict for a recipient the rule matched with captures
// caps. A destination made from captures is checked: a recipient whose
// captures make no address (the pattern is wider than the template
// allows for) is deferred, as any failure of ours, never forwarded to
// garbage.
func (a *action) result(rcpt string, caps []string) sdk.Verdict {
	if a.to == nil {
		return a.verdict
	}
	dests := make([]string, 0, len(a.to))
	for _, to := range a.to {
		dest := to.expand(caps)
		if err := checkDestination(dest); err != nil {
			return sdk.Tempfail(451, "4.3.5", fmt.Sprintf("<%s>: routing rule %d makes no valid destination for it, try again later", rcpt, a.n))
		}
		// Two templates may make one address: it gets one copy.
		if !slices.ContainsFunc(dests, func(d string) bool { return strings.EqualFold(d, dest) }) {
			dests = append(dests, dest)
		}
	}
	return sdk.Continue().WithDestinations(dests...)
}

// newTable builds the table of s. ours are the domains the gateway is the
// MX for, as A-labels (empty from a host that does not say): a rule that
// forwards to one of them would loop, and a pattern or domain setting
// for another could never apply.
func newTable(s settings, ours []string) (*table, error) {
	if err := checkSeparator(s.SubaddressSeparator); err != nil {
		return nil, &sdk.SettingError{Key: "subaddress_separator", Err: err}
	}
	t := &table{
		exact:   make(map[string]sdk.Verdict),
		domains: make(map[string]*domain),
		other:   domain{separator: s.SubaddressSeparator},
	}
	for _, d := range ours {
		t.domain(d)
	}
	for i, ds := range s.Domain {
		if err := t.setDomain(ds, ours); err != nil {
			return nil, settingError(fmt.Sprintf("domain.%d", i), fmt.Sprintf("domain %d (name %q)", i+1, ds.Name), err)
		}
	}
	var patterns []*pattern
	for i, r := range s.Rule {
		p, err := t.add(i+1, r, ours)
		if err != nil {
			what := fmt.Sprintf("rule %d (match %q)", i+1, r.Match)
			if r.Regex != "" && r.Match == "" {
				what = fmt.Sprintf("rule %d", i+1)
			}
			return nil, settingError(fmt.Sprintf("rule.%d", i), what, err)
		}
		if p != nil {
			patterns = append(patterns, p)
		}
	}
	// Each domain gets, in file order, the patterns that can match there.
	for key, d := range t.domains {
		for _, p := range patterns {
			if p.canMatch(key, d.unicode) {
				d.patterns = append(d.patterns, p)
			}
		}
	}
	for _, p := range patterns {
		if p.re != nil {
			t.other.patterns = append(t.other.patterns, p)
		}
	}
	return t, nil
}

// settingError names the setting at fault, so that the gateway points at
// its line: prefix is the table's key ("rule.0"), what its description.
func settingError(prefix, what string, err error) error {
	key := prefix
	var se *keyError
	if errors.As(err, &se) {
		key += "." + se.key
	}
	return &sdk.SettingError{Key: key, Err: fmt.Errorf("%s: %w", what, err)}
}

func checkSeparator(sep string) error {
	if strings.ContainsAny(sep, "@ \t\r\n\"") {
		return fmt.Errorf("subaddress_separator %q: must not contain @, quotes or spaces", sep)
	}
	return nil
}

// domain returns the table's entry for the domain key, made with the
// top-level settings if there is none yet.
func (t *table) domain(key string) *domain {
	if d, ok := t.domains[key]; ok {
		return d
	}
	d := &domain{separator: t.other.separator, unicode: unicodeForm(key)}
	t.domains[key] = d
	return d
}

// setDomain applies one [[domain]] table. It must come before the rules,
// whose keys depend on it.
func (t *table) setDomain(ds domainSetting, ours []string) error {
	key, err := checkedDomain(ds.Name)
	if err != nil {
		return at("name", fmt.Errorf("name %q is not a domain: %v", ds.Name, err))
	}
	if len(ours) > 0 && !slices.Contains(ours, key) {
		return at("name", fmt.Errorf("%s is not one of this gateway's domains (%s): its settings would never apply", key, strings.Join(ours, ", ")))
	}
	if d, ok := t.domains[key]; ok && d.set {
		return at("name", fmt.Errorf("%s has settings in an earlier [[domain]] too", key))
	}
	d := t.domain(key)
	d.set, d.ignoreDots = true, ds.IgnoreDots
	if ds.SubaddressSeparator != nil {
		if err := checkSeparator(*ds.SubaddressSeparator); err != nil {
			return at("subaddress_separator", err)
		}
		d.separator = *ds.SubaddressSeparator
	}
	return nil
}

// keyError is an error about one setting of a rule or domain table.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// at says that err is about the table's setting key.
func at(key string, err error) error { return &keyError{key, err} }

// add adds rule number n to the table. A pattern rule is returned, for
// newTable to give the domains it can match.
func (t *table) add(n int, r ruleSetting, ours []string) (*pattern, error) {
	if (r.Match == "") == (r.Regex == "") {
		return nil, at("match", fmt.Errorf("a rule needs match = \"address\" or regex = '...', and only one of them"))
	}
	var p *pattern
	var local, key string
	if r.Regex != "" {
		var err error
		if p, err = newRegexp(r.Regex, ours); err != nil {
			return nil, at("regex", err)
		}
	} else {
		l, d, ok := splitAddress(r.Match)
		if !ok {
			return nil, at("match", fmt.Errorf("match must be an address, *@domain or a wildcard such as sales-*@domain"))
		}
		var err error
		if key, err = checkedDomain(d); err != nil {
			return nil, at("match", fmt.Errorf("%q is not a domain: %v", d, err))
		}
		if !utf8.ValidString(l) {
			return nil, at("match", fmt.Errorf("the local part is not UTF-8"))
		}
		local = localForm(l)
		if local == "*" {
			p = &pattern{glob: []string{"", ""}, domain: key} // for its capture, $1
		} else if strings.Contains(local, "*") {
			if len(ours) > 0 && !slices.Contains(ours, key) {
				return nil, at("match", fmt.Errorf("%s can never match: %s is not one of this gateway's domains (%s), and mail for other domains never reaches the router", r.Match, key, strings.Join(ours, ", ")))
			}
			p = &pattern{glob: newGlob(l), domain: key}
		}
	}
	act, err := t.action(n, r, p, ours)
	if err != nil {
		return nil, err
	}
	switch {
	case local == "*":
		d := t.domain(key)
		if d.catchAll != nil {
			return nil, at("match", fmt.Errorf("*@%s is matched by an earlier rule too", key))
		}
		d.catchAll = &act
	case p != nil:
		p.act = act
		if p.glob != nil {
			t.domain(p.domain) // so that the domain's patterns are found
		}
		return p, nil
	default:
		d := t.domains[key]
		if d == nil {
			d = &t.other
		}
		addr := d.key(local) + "@" + key
		if _, dup := t.exact[addr]; dup {
			return nil, at("match", fmt.Errorf("%s is matched by an earlier rule too", addr))
		}
		t.exact[addr] = act.verdict
	}
	return nil, nil
}

// action checks rule n's action and its settings and returns what the rule
// does. p is the rule's pattern, nil for an exact address or a catch-all.
func (t *table) action(n int, r ruleSetting, p *pattern, ours []string) (action, error) {
	v, err := verdictFor(r)
	if err != nil {
		return action{}, err
	}
	act := action{n: n, verdict: v}
	if v.Destination == "" {
		t.perms |= permission(v)
		return act, nil
	}
	if len(r.To) > abi.MaxDestinations {
		return action{}, at("to", fmt.Errorf("to lists %d addresses; at most %d", len(r.To), abi.MaxDestinations))
	}
	// With captures in any destination, each is a template.
	templated := p != nil && slices.ContainsFunc(r.To, func(to string) bool { return strings.Contains(to, "$") })
	for i, to := range r.To {
		if slices.ContainsFunc(r.To[:i], func(e string) bool { return strings.EqualFold(e, to) }) {
			return action{}, at("to", fmt.Errorf("to lists %q twice", to))
		}
		var toDomain string // the destination's domain, if the rule fixes it
		if templated {
			tmpl, err := destinationTemplate(to, p, r.Regex)
			if err != nil {
				return action{}, err
			}
			act.to = append(act.to, tmpl)
			toDomain = tmpl.fixedDomain()
		} else {
			if err := checkDestination(to); err != nil {
				return action{}, at("to", fmt.Errorf("to %q is not an address", to))
			}
			_, toDomain, _ = splitAddress(to)
		}
		if toDomain != "" {
			key, _ := checkedDomain(toDomain)
			if slices.Contains(ours, key) {
				return action{}, at("to", fmt.Errorf("to %q is at %s, a domain this gateway serves: mail forwarded there would come back here (a routing loop)", to, key))
			}
		}
	}
	if templated {
		act.verdict = sdk.Continue()
	}
	t.perms |= permission(v)
	if act.to != nil {
		t.perms |= abi.MayTempfail // for a recipient whose captures make no address
	}
	return act, nil
}

// destinationTemplate parses a destination made from the captures of
// pattern p (whose expression, if any, is regex).
func destinationTemplate(to string, p *pattern, regex string) (*template, error) {
	caps, index := len(p.glob)-1, (func(string) int)(nil)
	if p.re != nil {
		caps, index = p.re.NumSubexp(), p.re.SubexpIndex
	}
	tmpl, err := parseTemplate(to, caps, index)
	if err != nil {
		return nil, at("to", err)
	}
	// What the captures cannot change must already make an address: try
	// it with "x" for each capture.
	x := make([]string, caps+1)
	for i := range x {
		x[i] = "x"
	}
	if err := checkDestination(tmpl.expand(x)); err != nil {
		return nil, at("to", fmt.Errorf("to %q is not an address, whatever the captures are (tried with x for each): %v", to, err))
	}
	if ref, err := p.emptyCaptureFault(tmpl, x); err != nil {
		return nil, at("regex", fmt.Errorf("to %q is not an address when %s is empty (%v), which regex %q allows: make its group match at least one character (.+ rather than .*; not optional, nor in one branch of an alternative), or route those addresses with a rule before this one", to, ref, err, regex))
	}
	return tmpl, nil
}

// verdictFor checks a rule's action and its settings and returns the
// verdict the rule gives.
func verdictFor(r ruleSetting) (sdk.Verdict, error) {
	if r.Action != "forward" && r.To != nil {
		return sdk.Verdict{}, at("to", fmt.Errorf("to is only for action = \"forward\""))
	}
	if r.Action != "reject" && (r.Code != 0 || r.Enhanced != "" || r.Text != "") {
		key := "text"
		if r.Code != 0 {
			key = "code"
		} else if r.Enhanced != "" {
			key = "enhanced"
		}
		return sdk.Verdict{}, at(key, fmt.Errorf("code, enhanced and text are only for action = \"reject\""))
	}
	switch r.Action {
	case "forward":
		if len(r.To) == 0 {
			key := "action" // no to at all: the line of the action that needs it
			if r.To != nil {
				key = "to" // to = []: its own line
			}
			return sdk.Verdict{}, at(key, fmt.Errorf("forward needs to = \"address\" (or a list of them)"))
		}
		for _, to := range r.To {
			if _, _, ok := splitAddress(to); !ok || strings.Contains(to, "*") {
				return sdk.Verdict{}, at("to", fmt.Errorf("to %q is not an address", to))
			}
		}
		// Continue rather than Accept, so that plugins after the router
		// still see the recipient; the destinations are what forward it.
		return sdk.Continue().WithDestinations(r.To...), nil
	case "drop":
		return sdk.Discard(), nil
	case "reject":
		return rejectVerdict(r)
	}
	return sdk.Verdict{}, at("action", fmt.Errorf("action %q is not forward, drop or reject", r.Action))
}

func rejectVerdict(r ruleSetting) (sdk.Verdict, error) {
	code, enhanced, text := r.Code, r.Enhanced, r.Text
	if code == 0 {
		code = defaultRejectCode
	}
	if code < 0 || code > 999 {
		return sdk.Verdict{}, at("code", fmt.Errorf("code %d is not 4xx or 5xx", code))
	}
	if err := abi.CheckReply(uint16(code), enhanced); err != nil {
		key := "code"
		if enhanced != "" && code/100 >= 4 && code/100 <= 5 {
			key = "enhanced"
		}
		return sdk.Verdict{}, at(key, err)
	}
	if enhanced == "" {
		enhanced = fmt.Sprintf("%d.1.1", code/100)
	}
	if text == "" {
		text = defaultRejectText
	}
	if strings.ContainsAny(text, "\r\n") {
		return sdk.Verdict{}, at("text", fmt.Errorf("text must be one line"))
	}
	if code < 500 {
		return sdk.Tempfail(uint16(code), enhanced, text), nil
	}
	return sdk.Reject(uint16(code), enhanced, text), nil
}

// permission is what a verdict needs to be permitted.
func permission(v sdk.Verdict) abi.Permissions {
	switch {
	case v.Destination != "":
		return abi.MaySetDestination
	case v.Action == abi.Discard:
		return abi.MayDiscard
	case v.Action == abi.Reject:
		return abi.MayReject
	case v.Action == abi.Tempfail:
		return abi.MayTempfail
	}
	return 0
}

// route returns the verdict for a recipient, the first of: the rule for
// the exact address; for its subaddress base; the patterns in file order,
// for the address and then for its base; the domain's catch-all; else
// Continue. utf8 says whether the session is SMTPUTF8: without it, a
// recipient that is not ASCII matches nothing (the gateway refuses it).
func (t *table) route(rcpt string, utf8 bool) sdk.Verdict {
	l, dom, ok := splitAddress(rcpt)
	if !ok || !utf8 && !isASCII(rcpt) {
		return sdk.Continue()
	}
	key, err := domainKey(dom)
	if err != nil {
		return sdk.Continue()
	}
	d, known := t.domains[key]
	if !known {
		d = &t.other
	}
	nfc := l
	if !isASCII(l) {
		nfc = norm.NFC.String(l)
	}
	form := asciiLower(nfc)
	if v, ok := t.exact[d.key(form)+"@"+key]; ok {
		return v
	}
	base := -1
	if d.separator != "" {
		if i := strings.IndexAny(form, d.separator); i > 0 {
			base = i
			if v, ok := t.exact[d.key(form[:i])+"@"+key]; ok {
				return v
			}
		}
	}
	if len(d.patterns) > 0 {
		udomain := d.unicode
		if !known {
			udomain = unicodeForm(key)
		}
		s := newSubject(form, nfc, key, udomain)
		for _, p := range d.patterns {
			if caps, ok := p.match(s); ok {
				return p.act.result(rcpt, caps)
			}
		}
		if base > 0 {
			s = newSubject(form[:base], nfc[:base], key, udomain)
			for _, p := range d.patterns {
				if caps, ok := p.match(s); ok {
					return p.act.result(rcpt, caps)
				}
			}
		}
	}
	if d.catchAll != nil {
		return d.catchAll.result(rcpt, []string{"", nfc})
	}
	return sdk.Continue()
}
