package main

import (
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

func newTable(s settings) (*table, error) {
	if strings.ContainsAny(s.SubaddressSeparator, "@ \t\r\n\"") {
		return nil, fmt.Errorf("subaddress_separator %q: must not contain @, quotes or spaces", s.SubaddressSeparator)
	}
	t := &table{
		separator: s.SubaddressSeparator,
		exact:     make(map[string]sdk.Verdict),
		catchAll:  make(map[string]sdk.Verdict),
	}
	for i, r := range s.Rule {
		if err := t.add(r); err != nil {
			return nil, fmt.Errorf("rule %d (match %q): %w", i+1, r.Match, err)
		}
	}
	return t, nil
}

func (t *table) add(r ruleSetting) error {
	v, err := verdictFor(r)
	if err != nil {
		return err
	}
	local, domain, ok := splitAddress(r.Match)
	if !ok {
		return fmt.Errorf("match must be an address or *@domain")
	}
	local, domain = strings.ToLower(local), strings.ToLower(domain)
	switch {
	case local == "*":
		if _, dup := t.catchAll[domain]; dup {
			return fmt.Errorf("*@%s is matched by an earlier rule too", domain)
		}
		t.catchAll[domain] = v
	case strings.Contains(local, "*"):
		return fmt.Errorf("only a whole local part can be a wildcard, as in *@%s", domain)
	default:
		key := local + "@" + domain
		if _, dup := t.exact[key]; dup {
			return fmt.Errorf("%s is matched by an earlier rule too", key)
		}
		t.exact[key] = v
	}
	return nil
}

// verdictFor checks a rule's action and its settings and returns the
// verdict the rule gives.
func verdictFor(r ruleSetting) (sdk.Verdict, error) {
	if r.Action != "forward" && r.To != "" {
		return sdk.Verdict{}, fmt.Errorf("to is only for action = \"forward\"")
	}
	if r.Action != "reject" && (r.Code != 0 || r.Enhanced != "" || r.Text != "") {
		return sdk.Verdict{}, fmt.Errorf("code, enhanced and text are only for action = \"reject\"")
	}
	switch r.Action {
	case "forward":
		if r.To == "" {
			return sdk.Verdict{}, fmt.Errorf("forward needs to = \"address\"")
		}
		if _, _, ok := splitAddress(r.To); !ok || strings.Contains(r.To, "*") {
			return sdk.Verdict{}, fmt.Errorf("to %q is not an address", r.To)
		}
		// Continue rather than Accept, so that plugins after the router
		// still see the recipient; the destination is what forwards it.
		return sdk.Continue().WithDestination(r.To), nil
	case "drop":
		return sdk.Discard(), nil
	case "reject":
		return rejectVerdict(r)
	}
	return sdk.Verdict{}, fmt.Errorf("action %q is not forward, drop or reject", r.Action)
}

func rejectVerdict(r ruleSetting) (sdk.Verdict, error) {
	code, enhanced, text := r.Code, r.Enhanced, r.Text
	if code == 0 {
		code = defaultRejectCode
	}
	if code < 0 || code > 999 {
		return sdk.Verdict{}, fmt.Errorf("code %d is not 4xx or 5xx", code)
	}
	if err := abi.CheckReply(uint16(code), enhanced); err != nil {
		return sdk.Verdict{}, err
	}
	if enhanced == "" {
		enhanced = fmt.Sprintf("%d.1.1", code/100)
	}
	if text == "" {
		text = defaultRejectText
	}
	if strings.ContainsAny(text, "\r\n") {
		return sdk.Verdict{}, fmt.Errorf("text must be one line")
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
