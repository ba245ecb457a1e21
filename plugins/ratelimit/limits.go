package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/plugins/internal/clientnet"
	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// settings is the plugin's config table.
type settings struct {
	Limit          []limitSetting `toml:"limit"`
	Window         string         `toml:"window"` // fixed (default) or sliding
	Stage          string         `toml:"stage"`  // early (default) or data
	Code           int            `toml:"code"`   // 450 (default) or 421
	IPv4Prefix     *int           `toml:"ipv4_prefix"`
	IPv6Prefix     *int           `toml:"ipv6_prefix"`
	ExemptNetworks []string       `toml:"exempt_networks"`
	ExemptDomains  []string       `toml:"exempt_domains"`
}

type limitSetting struct {
	Count string       `toml:"count"` // what is counted: a kind below
	Max   int64        `toml:"max"`
	Per   sdk.Duration `toml:"per"`
}

// The kinds of limit: what one counter is kept for.
const (
	kindClient        = "client"               // the client's address, or its network
	kindSender        = "sender_domain"        // the domain of MAIL FROM
	kindAuthenticated = "authenticated_domain" // a domain that SPF or DKIM passed for
	kindRecipient     = "recipient"            // one recipient address
	kindUser          = "user"                 // a user logged in to the submission service
)

// stageOf is where each kind of limit is decided with stage = "early": as
// soon as what it counts is known. Authentication is known at data only.
var stageOf = map[string]abi.Stage{
	kindClient: abi.StageMail, kindSender: abi.StageMail, kindUser: abi.StageMail,
	kindRecipient: abi.StageRcpt, kindAuthenticated: abi.StageData,
}

// The defaults: a client is one address in IPv4 and a /64 in IPv6, which
// is what one customer of most providers gets.
const (
	defaultIPv4Prefix = 32
	defaultIPv6Prefix = 64
	defaultCode       = 450
)

type limit struct {
	kind  string
	max   int64
	per   time.Duration
	stage abi.Stage
}

// limiter counts what its limits count in the plugin's key-value store
// and refuses what goes over one.
type limiter struct {
	limits     []limit
	sliding    bool
	code       uint16
	prefixes   clientnet.Prefixes
	exemptNets []netip.Prefix
	exemptDoms []string // lower case
	now        func() time.Time
}

func newLimiter(s settings) (*limiter, error) {
	l := &limiter{prefixes: clientnet.Prefixes{IPv4: defaultIPv4Prefix, IPv6: defaultIPv6Prefix}, code: defaultCode, now: time.Now}
	if len(s.Limit) == 0 {
		return nil, &sdk.SettingError{Key: "limit", Err: errors.New("no [[limit]]: the plugin would count nothing")}
	}
	atData := false
	switch s.Stage {
	case "", "early":
	case "data":
		atData = true
	default:
		return nil, &sdk.SettingError{Key: "stage", Err: fmt.Errorf("stage %q: want \"early\" or \"data\"", s.Stage)}
	}
	switch s.Window {
	case "", "fixed":
	case "sliding":
		l.sliding = true
	default:
		return nil, &sdk.SettingError{Key: "window", Err: fmt.Errorf("window %q: want \"fixed\" or \"sliding\"", s.Window)}
	}
	switch s.Code {
	case 0:
	case 450, 421:
		l.code = uint16(s.Code)
	default:
		return nil, &sdk.SettingError{Key: "code", Err: fmt.Errorf("code %d: want 450 (defer the message) or 421 (defer and close the session)", s.Code)}
	}
	if err := l.prefixes.Set(s.IPv4Prefix, s.IPv6Prefix); err != nil {
		return nil, err
	}
	authLimit := false
	for i, ls := range s.Limit {
		key := fmt.Sprintf("limit.%d", i)
		st, ok := stageOf[ls.Count]
		if !ok {
			return nil, &sdk.SettingError{Key: key + ".count", Err: fmt.Errorf("limit %d: count %q: want %s, %s, %s, %s or %s",
				i+1, ls.Count, kindClient, kindSender, kindAuthenticated, kindRecipient, kindUser)}
		}
		if ls.Max <= 0 {
			return nil, &sdk.SettingError{Key: key + ".max", Err: fmt.Errorf("limit %d: max must be 1 or more", i+1)}
		}
		if ls.Per <= 0 {
			return nil, &sdk.SettingError{Key: key + ".per", Err: fmt.Errorf("limit %d: per is required: the window, such as \"1h\"", i+1)}
		}
		if time.Duration(ls.Per) < time.Second || time.Duration(ls.Per) > 366*24*time.Hour {
			return nil, &sdk.SettingError{Key: key + ".per", Err: fmt.Errorf("limit %d: per %s: want 1s to 366d", i+1, ls.Per)}
		}
		if atData {
			st = abi.StageData
		}
		authLimit = authLimit || st == abi.StageData
		l.limits = append(l.limits, limit{kind: ls.Count, max: ls.Max, per: time.Duration(ls.Per), stage: st})
	}
	var err error
	if l.exemptNets, err = clientnet.Networks("exempt_networks", s.ExemptNetworks); err != nil {
		return nil, err
	}
	if l.exemptDoms, err = clientnet.Domains("exempt_domains", s.ExemptDomains); err != nil {
		return nil, err
	}
	if len(l.exemptDoms) > 0 && !authLimit {
		// Authentication is known at data only: with every limit decided
		// before, the exemption could never apply.
		return nil, &sdk.SettingError{Key: "exempt_domains", Err: errors.New(
			`exempt_domains applies to limits decided at data, where SPF and DKIM are known: add an authenticated_domain limit, or set stage = "data"`)}
	}
	return l, nil
}

// decide counts the request against each limit of its stage and refuses
// it when one is exceeded. Every attempt counts, refused ones too: a
// client that keeps trying stays over the limit.
func (l *limiter) decide(req *sdk.Request) sdk.Verdict {
	client, _ := netip.ParseAddr(req.ClientIP)
	client = client.Unmap()
	if clientnet.Contains(l.exemptNets, client) {
		return sdk.Continue()
	}
	var authDomains []string
	if req.Stage == abi.StageData {
		authDomains = authenticated(&req.Auth)
		for _, d := range authDomains {
			if clientnet.Under(d, l.exemptDoms) {
				return sdk.Continue()
			}
		}
	}
	for _, lim := range l.limits {
		if lim.stage != req.Stage {
			continue
		}
		for _, s := range l.subjects(lim.kind, req, client, authDomains) {
			n, err := l.count(lim, s.key)
			if err != nil {
				return failure("counting " + s.what + ": " + err.Error())
			}
			if n > float64(lim.max) {
				messages := "messages"
				if lim.max == 1 {
					messages = "message"
				}
				return sdk.Tempfail(l.code, "4.7.1", fmt.Sprintf("%s exceeded %d %s per %s, try again later", s.what, lim.max, messages, sdk.Duration(lim.per)))
			}
		}
	}
	return sdk.Continue()
}

// failure is the answer when the store fails (full, or not answering): a
// failure of the plugin, so that the operator's on_failure decides between
// deferring the mail (tempfail, the default) and letting it through (skip).
// A host that predates the failure field defers.
func failure(text string) sdk.Verdict {
	v := sdk.Tempfail(451, "4.3.0", "Rate limit not checked, try again later")
	v.Failure = text
	return v
}

// subject is one thing a limit counts: its key in the store and its name
// in the reply.
type subject struct{ key, what string }

// subjects are what a limit of kind counts in req: none when req does not
// have it (a null sender has no domain).
func (l *limiter) subjects(kind string, req *sdk.Request, client netip.Addr, authDomains []string) []subject {
	switch kind {
	case kindClient:
		if !client.IsValid() {
			return nil
		}
		p := l.prefixes.Of(client)
		if p.Bits() == client.BitLen() {
			return []subject{{"c:" + client.String(), "Client " + client.String()}}
		}
		return []subject{{"c:" + p.String(), "Client network " + p.String()}}
	case kindSender:
		_, d, ok := strings.Cut(req.MailFrom, "@")
		if !ok || d == "" {
			return nil
		}
		d = strings.ToLower(d)
		return []subject{{"s:" + d, "Sender domain " + d}}
	case kindAuthenticated:
		var out []subject
		for _, d := range authDomains {
			out = append(out, subject{"a:" + d, "Authenticated domain " + d})
		}
		return out
	case kindRecipient:
		rcpts := []string{req.Rcpt}
		if req.Stage == abi.StageData {
			rcpts = req.Rcpts
		}
		var out []subject
		for _, r := range rcpts {
			r = strings.ToLower(r)
			out = append(out, subject{"r:" + r, "Recipient " + r})
		}
		return out
	case kindUser:
		// Mail with no user logged in (all of the MX's) is not counted:
		// a user limit is for what our own users send, and the client
		// and sender limits count the rest.
		if req.AuthenticatedUser == "" {
			return nil
		}
		return []subject{{"u:" + req.AuthenticatedUser, "User " + req.AuthenticatedUser}}
	}
	return nil
}

// authenticated returns the domains that SPF or a DKIM signature passed
// for, in lower case, each once.
func authenticated(a *abi.Auth) []string {
	var out []string
	add := func(d string) {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		for _, o := range out {
			if o == d {
				return
			}
		}
		if d != "" {
			out = append(out, d)
		}
	}
	if a.SPF.Result == "pass" {
		add(a.SPF.Domain)
	}
	for _, s := range a.DKIM {
		if s.Result == "pass" {
			add(s.Domain)
		}
	}
	return out
}

// count adds one to subject's counter of lim and returns the count in
// the window that ends now.
//
// A fixed window is one counter that expires per after its first count:
// the store's clock alone decides, so gateway nodes sharing a store agree
// whatever their clocks say. A sliding window keeps a counter per window
// of the wall clock and weighs the previous one by how much of it the
// sliding window still covers (the estimate Cloudflare and nginx use):
// smoother at the window's edges, and needing the nodes' clocks to agree.
func (l *limiter) count(lim limit, subject string) (float64, error) {
	key := storeKey(lim, subject)
	if !l.sliding {
		n, err := sdk.KVIncr(key, 1, lim.per)
		return float64(n), err
	}
	now := l.now().UnixMilli()
	per := lim.per.Milliseconds()
	window := now / per
	n, err := sdk.KVIncr(key+"@"+strconv.FormatInt(window, 10), 1, 2*lim.per)
	if err != nil {
		return 0, err
	}
	prev, err := sdk.KVGet(key + "@" + strconv.FormatInt(window-1, 10))
	if errors.Is(err, sdk.ErrNotFound) {
		return float64(n), nil
	}
	if err != nil {
		return 0, err
	}
	p, err := strconv.ParseInt(string(prev), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("previous window's counter %q", prev)
	}
	covered := 1 - float64(now%per)/float64(per)
	return float64(n) + float64(p)*covered, nil
}

// storeKey is the counter's key: the limit's kind and window, so that two
// limits of one kind count apart, and what is counted, hashed when it
// would make the key too long.
func storeKey(lim limit, subject string) string {
	key := strconv.FormatInt(lim.per.Milliseconds(), 10) + ":" + subject
	if len(key)+24 > abi.MaxKVKey { // room for the sliding window's "@index"
		sum := sha256.Sum256([]byte(subject))
		key = strconv.FormatInt(lim.per.Milliseconds(), 10) + ":" + subject[:2] + hex.EncodeToString(sum[:16])
	}
	return key
}

// permissions are what the limiter's verdicts need.
func (l *limiter) permissions() abi.Permissions { return abi.MayTempfail }
