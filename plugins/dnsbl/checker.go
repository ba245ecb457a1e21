package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// settings are the plugin's [plugin.config] table.
type settings struct {
	Zones       []zoneSettings `toml:"zone"`
	RefuseAt    string         `toml:"refuse_at"`    // "rcpt" (default) or "connect"
	URL         string         `toml:"url"`          // named in the refusal: "Refer to URL"
	AllowIPs    []string       `toml:"allow_ips"`    // addresses and networks never checked
	AllowNames  []string       `toml:"allow_names"`  // verified client names (and names under them) never checked
	OnTemperror string         `toml:"on_temperror"` // "continue" (default) or "tempfail"
}

type zoneSettings struct {
	Name string `toml:"name"`
	// Codes are the answers that mean listed: addresses, or ranges
	// "first-last"; default 127.0.0.2-127.0.0.255.
	Codes []string `toml:"codes"`
	// Score, when set, makes a listing a finding with this score instead
	// of a refusal.
	Score  *float64 `toml:"score"`
	Symbol string   `toml:"symbol"` // the finding's symbol; default from the zone's name
}

// maxZones keeps every zone's lookup within one call's budget (sdk/ABI.md:
// ten lookups per call), so that all of them run at the same time.
const maxZones = 10

// checker is the plugin's configuration, ready to use.
type checker struct {
	refusing   []zone // zones whose listing refuses the client
	scored     []zone // zones whose listing is a finding
	atConnect  bool   // refuse at connect; otherwise at rcpt
	url        string
	allowIPs   []netip.Prefix
	allowNames []string // lower case, without the final dot
	tempfail   bool     // a DNS failure defers instead of letting the client on
	ours       map[string]bool
}

type zone struct {
	name   string // lower case, without the final dot
	codes  []codeRange
	scored bool
	score  float64
	symbol string
}

type codeRange struct{ first, last netip.Addr }

// defaultCodes are what most lists answer for a listing; 127.0.0.1 and
// below are never one (127.0.0.1 is the usual answer to a test query).
var defaultCodes = []codeRange{{netip.AddrFrom4([4]byte{127, 0, 0, 2}), netip.AddrFrom4([4]byte{127, 0, 0, 255})}}

// refusedQuery is where lists answer a query they will not serve (an open
// resolver, a public resolver, over quota): never a listing.
var refusedQuery = netip.MustParsePrefix("127.255.255.0/24")

func newChecker(s settings, ours []string) (*checker, error) {
	c := &checker{url: s.URL, ours: map[string]bool{}}
	for _, d := range ours {
		c.ours[d] = true
	}
	switch s.RefuseAt {
	case "", "rcpt":
	case "connect":
		c.atConnect = true
	default:
		return nil, settingError("refuse_at", "refuse_at %q: want rcpt or connect", s.RefuseAt)
	}
	switch s.OnTemperror {
	case "", "continue":
	case "tempfail":
		c.tempfail = true
	default:
		return nil, settingError("on_temperror", "on_temperror %q: want continue or tempfail", s.OnTemperror)
	}
	if strings.ContainsAny(s.URL, "\r\n") {
		return nil, settingError("url", "url: must be one line")
	}
	if len(s.Zones) == 0 {
		return nil, settingError("zone", "no [[plugin.config.zone]]: name at least one DNS blocklist")
	}
	if len(s.Zones) > maxZones {
		return nil, settingError("zone", "%d zones: at most %d, the DNS lookups one call may make", len(s.Zones), maxZones)
	}
	seen := map[string]bool{}
	for i, zs := range s.Zones {
		z, key, err := newZone(zs)
		if err == nil && seen[z.name] {
			key, err = "name", fmt.Errorf("listed twice")
		}
		if err != nil {
			return nil, &sdk.SettingError{Key: fmt.Sprintf("zone.%d.%s", i, key), Err: fmt.Errorf("zone %d (%q): %w", i+1, zs.Name, err)}
		}
		seen[z.name] = true
		if z.scored {
			c.scored = append(c.scored, z)
		} else {
			c.refusing = append(c.refusing, z)
		}
	}
	for i, a := range s.AllowIPs {
		p, err := parsePrefix(a)
		if err != nil {
			return nil, &sdk.SettingError{Key: fmt.Sprintf("allow_ips.%d", i), Err: fmt.Errorf("allow_ips: %q: want an address or a network (192.0.2.0/24)", a)}
		}
		c.allowIPs = append(c.allowIPs, p)
	}
	for i, n := range s.AllowNames {
		n = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(n, "."), "."))
		if !domainName(n) {
			return nil, &sdk.SettingError{Key: fmt.Sprintf("allow_names.%d", i), Err: fmt.Errorf("allow_names: %q is not a domain name", s.AllowNames[i])}
		}
		c.allowNames = append(c.allowNames, n)
	}
	return c, nil
}

func settingError(key, format string, args ...any) error {
	return &sdk.SettingError{Key: key, Err: fmt.Errorf(format, args...)}
}

// newZone checks one zone's settings; on error it names the key at fault.
func newZone(s zoneSettings) (zone, string, error) {
	z := zone{name: strings.ToLower(strings.TrimSuffix(s.Name, "."))}
	if !domainName(z.name) {
		return z, "name", errors.New("name: not a domain name")
	}
	z.codes = defaultCodes
	if len(s.Codes) > 0 {
		z.codes = nil
		for _, code := range s.Codes {
			r, err := parseCodes(code)
			if err != nil {
				return z, "codes", err
			}
			z.codes = append(z.codes, r)
		}
	}
	if s.Score != nil {
		z.scored, z.score = true, *s.Score
	} else if s.Symbol != "" {
		return z, "symbol", errors.New("symbol: only a zone with a score reports a finding")
	}
	z.symbol = s.Symbol
	if z.symbol == "" {
		z.symbol = "DNSBL_" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' {
				return r - 'a' + 'A'
			}
			if r >= '0' && r <= '9' {
				return r
			}
			return '_'
		}, z.name)
	}
	return z, "", nil
}

// parseCodes reads "127.0.0.2" or "127.0.0.2-127.0.0.11".
func parseCodes(s string) (codeRange, error) {
	first, last, isRange := strings.Cut(s, "-")
	a, err := netip.ParseAddr(strings.TrimSpace(first))
	b := a
	if err == nil && isRange {
		b, err = netip.ParseAddr(strings.TrimSpace(last))
	}
	if err != nil || !a.Is4() || !b.Is4() || b.Less(a) {
		return codeRange{}, fmt.Errorf("codes: %q: want an IPv4 address or a range 127.0.0.2-127.0.0.11", s)
	}
	if refusedQuery.Contains(a) || refusedQuery.Contains(b) {
		return codeRange{}, fmt.Errorf("codes: %q: 127.255.255.x means the list refused the query, never a listing", s)
	}
	return codeRange{a, b}, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// domainName accepts LDH names with at least two labels.
func domainName(s string) bool {
	labels := strings.Split(s, ".")
	if len(s) > 253 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (c *checker) permissions() abi.Permissions {
	p := abi.MayReject
	if c.tempfail {
		p |= abi.MayTempfail
	}
	return p
}

// connect refuses a listed client at once, when so configured.
func (c *checker) connect(req *sdk.Request) sdk.Verdict {
	if !c.atConnect {
		return sdk.Continue()
	}
	return c.check(req, c.refusing)
}

// rcpt refuses a listed client's recipient, but lets mail to the
// postmaster and abuse addresses of our domains through, so that whoever
// runs the listed host can still reach us (RFC 5321 section 4.5.1). The
// scored zones are asked here, where findings count (at connect there is
// no message yet to score).
func (c *checker) rcpt(req *sdk.Request) sdk.Verdict {
	zones := c.scored
	if !c.atConnect && !c.exempt(req.Rcpt) {
		zones = append(zones[:len(zones):len(zones)], c.refusing...)
	}
	return c.check(req, zones)
}

// exempt reports a recipient that a listed client may still write to.
func (c *checker) exempt(rcpt string) bool {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return false
	}
	local, domain := strings.ToLower(rcpt[:at]), strings.ToLower(rcpt[at+1:])
	return (local == "postmaster" || local == "abuse") && c.ours[domain]
}

// check asks the zones about the client, all at once: a listing on a
// refusing zone refuses, one on a scored zone is a finding.
func (c *checker) check(req *sdk.Request, zones []zone) sdk.Verdict {
	ip, err := netip.ParseAddr(req.ClientIP)
	if err != nil || len(zones) == 0 {
		return sdk.Continue()
	}
	ip = ip.Unmap()
	if c.allowed(ip, req) {
		return sdk.Continue()
	}
	names := make([]string, len(zones))
	rev := reversed(ip)
	for i, z := range zones {
		names[i] = rev + "." + z.name
	}
	answers, err := sdk.LookupMany(abi.TypeA, names)
	if err != nil {
		sdk.Log(abi.LogWarn, "dnsbl: cannot ask the lists: "+err.Error())
		return c.failed(ip)
	}
	v := sdk.Continue()
	var listed []string
	failed := false
	for i, z := range zones {
		hit, ok := z.listed(answers[i], ip)
		switch {
		case !ok && !z.scored:
			failed = true
		case hit && z.scored:
			v = v.Finding(z.symbol, z.score)
		case hit:
			listed = append(listed, z.name)
		}
	}
	if len(listed) > 0 {
		text := fmt.Sprintf("%s found on one or more DNSBLs (%s).", ip, strings.Join(listed, ", "))
		if c.url != "" {
			text += " Refer to " + c.url
		}
		return sdk.Reject(554, "5.7.1", text)
	}
	if failed && c.tempfail {
		return c.failed(ip)
	}
	return v
}

// failed is the answer when a list could not be asked: the client goes
// on, unless on_temperror says to defer it.
func (c *checker) failed(ip netip.Addr) sdk.Verdict {
	if !c.tempfail {
		return sdk.Continue()
	}
	return sdk.Tempfail(451, "4.4.3", fmt.Sprintf("Cannot check %s against DNS blocklists now, try again later", ip))
}

// listed reads a zone's answer: whether it lists ip, and whether the
// answer could be read at all. A failed lookup and a list refusing the
// query are logged and are never a listing.
func (z zone) listed(a sdk.Answer, ip netip.Addr) (hit, ok bool) {
	if errors.Is(a.Err, sdk.ErrNotFound) {
		return false, true
	}
	if a.Err != nil {
		sdk.Log(abi.LogWarn, fmt.Sprintf("dnsbl: %s: cannot look %s up: %v", z.name, ip, a.Err))
		return false, false
	}
	for _, r := range a.Records {
		code, err := netip.ParseAddr(r)
		switch {
		case err != nil:
		case refusedQuery.Contains(code):
			sdk.Log(abi.LogWarn, fmt.Sprintf("dnsbl: %s refused the query for %s (answer %s): check its terms of use and the resolver the gateway uses", z.name, ip, code))
			return false, false
		case z.match(code):
			hit = true
		}
	}
	return hit, true
}

func (z zone) match(code netip.Addr) bool {
	for _, r := range z.codes {
		if !code.Less(r.first) && !r.last.Less(code) {
			return true
		}
	}
	return false
}

// allowed reports a client that is never checked: its address is in
// allow_ips, or its forward-confirmed name is or is under an allow_names
// entry.
func (c *checker) allowed(ip netip.Addr, req *sdk.Request) bool {
	for _, p := range c.allowIPs {
		if p.Contains(ip) {
			return true
		}
	}
	if req.ClientNameResult != "pass" || req.ClientName == "" {
		return false
	}
	name := strings.ToLower(strings.TrimSuffix(req.ClientName, "."))
	for _, n := range c.allowNames {
		if name == n || strings.HasSuffix(name, "."+n) {
			return true
		}
	}
	return false
}

// reversed is how DNS blocklists are asked about ip: IPv4 octets or IPv6
// nibbles in reverse order, as under in-addr.arpa and ip6.arpa.
func reversed(ip netip.Addr) string {
	rev := sdk.ReverseName(ip)
	return rev[:strings.LastIndexByte(rev[:strings.LastIndexByte(rev, '.')], '.')]
}
