package main

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// settings is the plugin's config table.
type settings struct {
	// Scores overrides the weight of symbols by name; 0 turns a check off.
	Scores map[string]float64 `toml:"scores"`
	// Headers adds X-Spam-Score, X-Spam-Symbols and X-Spam-Flag (default
	// true).
	Headers *bool `toml:"headers"`
	// Thresholds on the plugin's own score; 0 is off.
	Flag       *float64 `toml:"flag"`
	Quarantine float64  `toml:"quarantine"`
	Reject     float64  `toml:"reject"`
	SubjectTag *string  `toml:"subject_tag"`

	FreemailDomains []string `toml:"freemail_domains"`
	URLShorteners   []string `toml:"url_shorteners"`
	URIBL           []uribl  `toml:"uribl"`

	DateFuture time.Duration `toml:"date_future"`
	DatePast   time.Duration `toml:"date_past"`

	MaxBytes         int `toml:"max_bytes"`
	MaxParts         int `toml:"max_parts"`
	MaxURLs          int `toml:"max_urls"`
	MaxURIBLLookups  int `toml:"max_uribl_lookups"`
	MaxArchiveBytes  int `toml:"max_archive_bytes"`
	MaxArchiveFiles  int `toml:"max_archive_files"`
	MinCapitalLetter int `toml:"min_capital_letters"`
}

// uribl is a domain blocklist of URLs: a name domain.zone with an address
// in 127.0.0.0/8 lists the domain.
type uribl struct {
	Zone   string  `toml:"zone"`
	Symbol string  `toml:"symbol"`
	Score  float64 `toml:"score"`
}

// Defaults of the settings that have one.
const (
	defaultFlag            = 6.0
	defaultSubjectTag      = "[SPAM]"
	defaultDateFuture      = 2 * time.Hour
	defaultDatePast        = 7 * 24 * time.Hour
	defaultMaxBytes        = 512 << 10
	defaultMaxParts        = 64
	defaultMaxURLs         = 100
	defaultMaxURIBLLookups = 6
	defaultMaxArchiveBytes = 256 << 10
	defaultMaxArchiveFiles = 256
	defaultMinCapitals     = 8
)

// defaultFreemail are the large free mailbox providers: a Reply-To there,
// away from the From domain, is how advance-fee and invoice fraud collects
// answers.
var defaultFreemail = []string{
	"gmail.com", "googlemail.com", "yahoo.com", "ymail.com", "yahoo.co.uk", "yahoo.fr",
	"outlook.com", "hotmail.com", "hotmail.co.uk", "live.com", "msn.com", "aol.com",
	"icloud.com", "me.com", "mail.com", "gmx.com", "gmx.net", "gmx.de", "web.de",
	"yandex.ru", "yandex.com", "mail.ru", "proton.me", "protonmail.com", "zoho.com",
	"qq.com", "163.com", "126.com",
}

// defaultShorteners are public URL shorteners: a link through one hides
// where it leads.
var defaultShorteners = []string{
	"bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "v.gd", "buff.ly",
	"rebrand.ly", "cutt.ly", "shorturl.at", "rb.gy", "t.ly", "tiny.cc", "bl.ink", "s.id",
}

// config is the validated configuration.
type config struct {
	scores     map[string]float64 // every known symbol's weight
	addFields  bool
	flag       float64
	quarantine float64
	reject     float64
	subjectTag string
	freemail   map[string]bool
	shorteners map[string]bool
	uribl      []uribl
	dateFuture time.Duration
	datePast   time.Duration
	limits     limits
	uriblMax   int
	minCaps    int
}

// limits bound the work on one message, so that a hostile one cannot make
// the plugin slow or run it out of memory.
type limits struct {
	bytes        int // of the body read
	parts        int // MIME parts looked at
	urls         int // URLs kept
	archiveBytes int // a zip attachment's decoded size looked into
	archiveFiles int // names looked at in one zip
}

func newConfig(s settings) (*config, error) {
	c := &config{
		scores:     maps.Clone(defaultScores),
		addFields:  s.Headers == nil || *s.Headers,
		flag:       defaultFlag,
		quarantine: s.Quarantine,
		reject:     s.Reject,
		subjectTag: defaultSubjectTag,
		dateFuture: or(s.DateFuture, defaultDateFuture),
		datePast:   or(s.DatePast, defaultDatePast),
		limits: limits{
			bytes:        or(s.MaxBytes, defaultMaxBytes),
			parts:        or(s.MaxParts, defaultMaxParts),
			urls:         or(s.MaxURLs, defaultMaxURLs),
			archiveBytes: or(s.MaxArchiveBytes, defaultMaxArchiveBytes),
			archiveFiles: or(s.MaxArchiveFiles, defaultMaxArchiveFiles),
		},
		uriblMax: or(s.MaxURIBLLookups, defaultMaxURIBLLookups),
		minCaps:  or(s.MinCapitalLetter, defaultMinCapitals),
	}
	if s.Flag != nil {
		c.flag = *s.Flag
	}
	if s.SubjectTag != nil {
		c.subjectTag = *s.SubjectTag
	}
	for _, name := range slices.Sorted(maps.Keys(s.Scores)) {
		if _, ok := c.scores[name]; !ok {
			return nil, &sdk.SettingError{Key: "scores." + name, Err: fmt.Errorf("scores: %s is not a symbol of this plugin (README.md lists them)", name)}
		}
		c.scores[name] = s.Scores[name]
	}
	for _, t := range []struct {
		key   string
		value float64
	}{{"flag", c.flag}, {"quarantine", c.quarantine}, {"reject", c.reject}} {
		if t.value < 0 {
			return nil, &sdk.SettingError{Key: t.key, Err: fmt.Errorf("%s: must be a positive score (or 0 for off), not %v", t.key, t.value)}
		}
	}
	if c.reject > 0 && c.quarantine >= c.reject {
		return nil, &sdk.SettingError{Key: "quarantine", Err: fmt.Errorf("quarantine (%v) must be below reject (%v), or it would never apply", c.quarantine, c.reject)}
	}
	if strings.ContainsFunc(c.subjectTag, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, &sdk.SettingError{Key: "subject_tag", Err: fmt.Errorf("subject_tag %q: must not contain control characters", c.subjectTag)}
	}
	for _, t := range []struct {
		key   string
		value int
	}{
		{"max_bytes", s.MaxBytes}, {"max_parts", s.MaxParts}, {"max_urls", s.MaxURLs},
		{"max_uribl_lookups", s.MaxURIBLLookups}, {"max_archive_bytes", s.MaxArchiveBytes},
		{"max_archive_files", s.MaxArchiveFiles}, {"min_capital_letters", s.MinCapitalLetter},
	} {
		if t.value < 0 {
			return nil, &sdk.SettingError{Key: t.key, Err: fmt.Errorf("%s: must be positive, not %d", t.key, t.value)}
		}
	}
	if s.DateFuture < 0 || s.DatePast < 0 {
		return nil, &sdk.SettingError{Key: "date_future", Err: fmt.Errorf("date_future and date_past must be positive durations")}
	}
	var err error
	if c.freemail, err = domainSet("freemail_domains", s.FreemailDomains, defaultFreemail); err != nil {
		return nil, err
	}
	if c.shorteners, err = domainSet("url_shorteners", s.URLShorteners, defaultShorteners); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, u := range s.URIBL {
		key := fmt.Sprintf("uribl.%d", i)
		zone, ok := domainName(u.Zone)
		switch {
		case !ok:
			return nil, &sdk.SettingError{Key: key + ".zone", Err: fmt.Errorf("uribl %d: zone %q is not a domain name", i+1, u.Zone)}
		case seen[zone]:
			return nil, &sdk.SettingError{Key: key + ".zone", Err: fmt.Errorf("uribl %d: zone %s is listed twice", i+1, zone)}
		case !validSymbol(u.Symbol):
			return nil, &sdk.SettingError{Key: key + ".symbol", Err: fmt.Errorf("uribl %d: symbol %q must be capital letters, digits and _", i+1, u.Symbol)}
		case defaultScores[u.Symbol] != 0:
			return nil, &sdk.SettingError{Key: key + ".symbol", Err: fmt.Errorf("uribl %d: symbol %s is one of the plugin's own", i+1, u.Symbol)}
		case u.Score <= 0:
			return nil, &sdk.SettingError{Key: key + ".score", Err: fmt.Errorf("uribl %d: score must be above 0", i+1)}
		}
		seen[zone] = true
		c.uribl = append(c.uribl, uribl{Zone: zone, Symbol: u.Symbol, Score: u.Score})
	}
	return c, nil
}

// permissions declares what this configuration can do, and no more.
func (c *config) permissions() abi.Permissions {
	var p abi.Permissions
	if c.addFields {
		p |= abi.MayAddHeaders | abi.MayRemoveHeaders
	}
	if c.quarantine > 0 {
		p |= abi.MayQuarantine | abi.MayAddHeaders | abi.MayRemoveHeaders
	}
	if c.reject > 0 {
		p |= abi.MayReject
	}
	return p
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// domainSet is a list setting of domain names, or def when not given.
func domainSet(key string, list, def []string) (map[string]bool, error) {
	if list == nil {
		list = def
	}
	set := make(map[string]bool, len(list))
	for _, raw := range list {
		d, ok := domainName(raw)
		if !ok {
			return nil, &sdk.SettingError{Key: key, Err: fmt.Errorf("%s: %q is not a domain name", key, raw)}
		}
		set[d] = true
	}
	return set, nil
}

// domainName returns s in lower case without a final dot, if it is a
// domain name of at least two labels in letters, digits and hyphens.
func domainName(s string) (string, bool) {
	d := strings.ToLower(strings.TrimSuffix(s, "."))
	if len(d) > 253 || !strings.Contains(d, ".") {
		return "", false
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return "", false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return "", false
			}
		}
	}
	return d, true
}

// validSymbol reports whether s is a symbol name: capital letters, digits
// and _, starting with a letter, as rspamd writes them.
func validSymbol(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
