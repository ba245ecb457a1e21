package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// settings is the plugin's config table.
type settings struct {
	// SubaddressSeparator holds the characters that start a subaddress:
	// with "+", "info+tag@d" falls back to the rule for "info@d".
	SubaddressSeparator string        `toml:"subaddress_separator"`
	Rule                []ruleSetting `toml:"rule"`
}

type ruleSetting struct {
	Match    string `toml:"match"`  // an address, or "*@domain"
	Action   string `toml:"action"` // forward, drop or reject
	To       string `toml:"to"`
	Code     int    `toml:"code"`
	Enhanced string `toml:"enhanced"`
	Text     string `toml:"text"`
}

// The reply for a reject rule that gives none.
const (
	defaultRejectCode = 550
	defaultRejectText = "Recipient address rejected"
)

// table is the routing table: the verdict for each exact address and for
// each domain's catch-all, keys in lower case.
type table struct {
	separator string
	exact     map[string]sdk.Verdict // "local@domain"
	catchAll  map[string]sdk.Verdict // "domain"
}

// newTable builds the table of s. ours are the domains the gateway is the
// MX for: a rule that forwards to one of them would loop.
func newTable(s settings, ours []string) (*table, error) {
	if strings.ContainsAny(s.SubaddressSeparator, "@ \t\r\n\"") {
		return nil, &sdk.SettingError{Key: "subaddress_separator",
			Err: fmt.Errorf("subaddress_separator %q: must not contain @, quotes or spaces", s.SubaddressSeparator)}
	}
	t := &table{
		separator: s.SubaddressSeparator,
		exact:     make(map[string]sdk.Verdict),
		catchAll:  make(map[string]sdk.Verdict),
	}
	for i, r := range s.Rule {
		if err := t.add(r, ours); err != nil {
			// The setting at fault, so that the gateway points at its line.
			key := fmt.Sprintf("rule.%d", i)
			var se *settingError
			if errors.As(err, &se) {
				key += "." + se.key
			}
			return nil, &sdk.SettingError{Key: key, Err: fmt.Errorf("rule %d (match %q): %w", i+1, r.Match, err)}
		}
	}
	return t, nil
}

// settingError is an error about one setting of a rule.
type settingError struct {
	key string
	err error
}

func (e *settingError) Error() string { return e.err.Error() }
func (e *settingError) Unwrap() error { return e.err }

// at says that err is about the rule's setting key.
func at(key string, err error) error { return &settingError{key, err} }

func (t *table) add(r ruleSetting, ours []string) error {
	v, err := verdictFor(r)
	if err != nil {
		return err
	}
	if v.Destination != "" {
		_, to, _ := splitAddress(v.Destination)
		for _, d := range ours {
			if strings.EqualFold(to, d) {
				return at("to", fmt.Errorf("to %q is at %s, a domain this gateway serves: mail forwarded there would come back here (a routing loop)", r.To, d))
			}
		}
	}
	local, domain, ok := splitAddress(r.Match)
	if !ok {
		return at("match", fmt.Errorf("match must be an address or *@domain"))
	}
	local, domain = strings.ToLower(local), strings.ToLower(domain)
	switch {
	case local == "*":
		if _, dup := t.catchAll[domain]; dup {
			return at("match", fmt.Errorf("*@%s is matched by an earlier rule too", domain))
		}
		t.catchAll[domain] = v
	case strings.Contains(local, "*"):
		return at("match", fmt.Errorf("only a whole local part can be a wildcard, as in *@%s", domain))
	default:
		key := local + "@" + domain
		if _, dup := t.exact[key]; dup {
			return at("match", fmt.Errorf("%s is matched by an earlier rule too", key))
		}
		t.exact[key] = v
	}
	return nil
}

// verdictFor checks a rule's action and its settings and returns the
// verdict the rule gives.
func verdictFor(r ruleSetting) (sdk.Verdict, error) {
	if r.Action != "forward" && r.To != "" {
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
		if r.To == "" {
			return sdk.Verdict{}, at("action", fmt.Errorf("forward needs to = \"address\""))
		}
		if _, _, ok := splitAddress(r.To); !ok || strings.Contains(r.To, "*") {
			return sdk.Verdict{}, at("to", fmt.Errorf("to %q is not an address", r.To))
		}
		// Continue rather than Accept, so that plugins after the router
		// still see the recipient; the destination is what forwards it.
		return sdk.Continue().WithDestination(r.To), nil
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

// permissions declares the actions this table's rules can take, and no more.
func (t *table) permissions() abi.Permissions {
	var p abi.Permissions
	for _, m := range []map[string]sdk.Verdict{t.exact, t.catchAll} {
		for _, v := range m {
			switch {
			case v.Destination != "":
				p |= abi.MaySetDestination
			case v.Action == abi.Discard:
				p |= abi.MayDiscard
			case v.Action == abi.Reject:
				p |= abi.MayReject
			case v.Action == abi.Tempfail:
				p |= abi.MayTempfail
			}
		}
	}
	return p
}

// route returns the verdict for a recipient: the rule for the exact
// address, else for its subaddress base, else the domain's catch-all, else
// Continue.
func (t *table) route(rcpt string) sdk.Verdict {
	local, domain, ok := splitAddress(rcpt)
	if !ok {
		return sdk.Continue()
	}
	local, domain = strings.ToLower(local), strings.ToLower(domain)
	if v, ok := t.exact[local+"@"+domain]; ok {
		return v
	}
	if t.separator != "" {
		if i := strings.IndexAny(local, t.separator); i > 0 {
			if v, ok := t.exact[local[:i]+"@"+domain]; ok {
				return v
			}
		}
	}
	if v, ok := t.catchAll[domain]; ok {
		return v
	}
	return sdk.Continue()
}

// splitAddress splits local@domain at its last @; both parts must be
// non-empty and free of spaces and angle brackets.
func splitAddress(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 || strings.ContainsAny(addr, " \t\r\n<>") {
		return "", "", false
	}
	return addr[:i], addr[i+1:], true
}
