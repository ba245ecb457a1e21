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
	Delay            sdk.Duration `toml:"delay"`
	RetryWindow      sdk.Duration `toml:"retry_window"`
	Expiry           sdk.Duration `toml:"expiry"`
	Stage            string       `toml:"stage"` // rcpt (default) or data
	IPv4Prefix       *int         `toml:"ipv4_prefix"`
	IPv6Prefix       *int         `toml:"ipv6_prefix"`
	AutoAllowlist    *bool        `toml:"auto_allowlist"`
	AllowNetworks    []string     `toml:"allow_networks"`
	AllowClientNames []string     `toml:"allow_client_names"`
	AllowDomains     []string     `toml:"allow_domains"`
}

// The defaults are postgrey's: a first attempt waits 5 minutes, a retry is
// accepted for 2 days after that, and what passed is remembered for 35
// days after it was last seen.
const (
	defaultDelay       = 5 * time.Minute
	defaultRetryWindow = 2 * 24 * time.Hour
	defaultExpiry      = 35 * 24 * time.Hour
	defaultIPv4Prefix  = 24
	defaultIPv6Prefix  = 64
	maxDuration        = 366 * 24 * time.Hour // the store's longest TTL
)

// greylist decides triplets (client network, sender, recipient): the first
// attempt of each is deferred, and a retry after the delay passes.
type greylist struct {
	delay, window, expiry time.Duration
	stage                 abi.Stage
	prefixes              clientnet.Prefixes
	auto                  bool
	allowNets             []netip.Prefix
	allowNames            []string // lower case, no leading dot
	allowDomains          []string
	now                   func() time.Time
}

func newGreylist(s settings) (*greylist, error) {
	g := &greylist{
		delay: defaultDelay, window: defaultRetryWindow, expiry: defaultExpiry, stage: abi.StageRcpt,
		prefixes: clientnet.Prefixes{IPv4: defaultIPv4Prefix, IPv6: defaultIPv6Prefix}, auto: true, now: time.Now,
	}
	for _, d := range []struct {
		key string
		set sdk.Duration
		to  *time.Duration
	}{{"delay", s.Delay, &g.delay}, {"retry_window", s.RetryWindow, &g.window}, {"expiry", s.Expiry, &g.expiry}} {
		if d.set == 0 {
			continue
		}
		if time.Duration(d.set) < time.Second || time.Duration(d.set) > maxDuration {
			return nil, &sdk.SettingError{Key: d.key, Err: fmt.Errorf("%s %s: want 1s to 366d", d.key, d.set)}
		}
		*d.to = time.Duration(d.set)
	}
	if g.delay+g.window > maxDuration {
		return nil, &sdk.SettingError{Key: "retry_window", Err: errors.New("delay and retry_window together: want at most 366d")}
	}
	switch s.Stage {
	case "", "rcpt":
	case "data":
		g.stage = abi.StageData
	default:
		return nil, &sdk.SettingError{Key: "stage", Err: fmt.Errorf("stage %q: want \"rcpt\" or \"data\"", s.Stage)}
	}
	if err := g.prefixes.Set(s.IPv4Prefix, s.IPv6Prefix); err != nil {
		return nil, err
	}
	if s.AutoAllowlist != nil {
		g.auto = *s.AutoAllowlist
	}
	var err error
	if g.allowNets, err = clientnet.Networks("allow_networks", s.AllowNetworks); err != nil {
		return nil, err
	}
	if g.allowNames, err = clientnet.Domains("allow_client_names", s.AllowClientNames); err != nil {
		return nil, err
	}
	if g.allowDomains, err = clientnet.Domains("allow_domains", s.AllowDomains); err != nil {
		return nil, err
	}
	if len(g.allowDomains) > 0 && g.stage != abi.StageData {
		// SPF and DKIM results reach plugins with the message, at data.
		return nil, &sdk.SettingError{Key: "allow_domains", Err: errors.New(
			`allow_domains needs stage = "data": SPF and DKIM results are known only once the message has arrived`)}
	}
	return g, nil
}

// decide greylists the request's triplets at the configured stage: the
// recipient at rcpt, or every recipient of the message at data.
func (g *greylist) decide(req *sdk.Request) sdk.Verdict {
	if req.Stage != g.stage || g.skip(req) {
		return sdk.Continue()
	}
	client, _ := netip.ParseAddr(req.ClientIP)
	network := g.network(client.Unmap(), req.ClientIP)
	rcpts := []string{req.Rcpt}
	if req.Stage == abi.StageData {
		rcpts = req.Rcpts
	}
	if g.auto {
		_, err := sdk.KVGet("n:" + network)
		if err == nil {
			return g.passed(network)
		}
		if !errors.Is(err, sdk.ErrNotFound) {
			return failure(err)
		}
	}
	wait := time.Duration(0)
	for _, r := range rcpts {
		w, err := g.triplet(network, req.MailFrom, r)
		if err != nil {
			return failure(err)
		}
		wait = max(wait, w)
	}
	if wait > 0 {
		secs := (wait + time.Second - 1) / time.Second
		return sdk.Tempfail(451, "4.7.1", "Greylisted, try again in "+strconv.FormatInt(int64(secs), 10)+" seconds")
	}
	return sdk.Continue()
}

// skip reports the clients and senders that are not greylisted: listed
// networks, clients whose forward-confirmed name is under an allowed
// suffix, and at data senders that SPF or DKIM passed for an allowed
// domain.
func (g *greylist) skip(req *sdk.Request) bool {
	if a, err := netip.ParseAddr(req.ClientIP); err == nil && clientnet.Contains(g.allowNets, a) {
		return true
	}
	if req.ClientNameResult == "pass" && req.ClientName != "" && clientnet.Under(req.ClientName, g.allowNames) {
		return true
	}
	if req.Stage == abi.StageData && len(g.allowDomains) > 0 {
		if req.Auth.SPF.Result == "pass" && clientnet.Under(req.Auth.SPF.Domain, g.allowDomains) {
			return true
		}
		for _, s := range req.Auth.DKIM {
			if s.Result == "pass" && clientnet.Under(s.Domain, g.allowDomains) {
				return true
			}
		}
	}
	return false
}

// network is the client's network as the triplet has it: its /24 or /64
// by default, so that a sender whose retries leave from another address of
// its pool is still recognised.
func (g *greylist) network(client netip.Addr, raw string) string {
	if !client.IsValid() {
		return raw
	}
	return g.prefixes.Of(client).String()
}

// triplet decides one triplet and returns how long it must still wait: 0
// when it passes.
//
// Time is kept by the store's TTLs alone, so that gateway nodes that
// share a store agree whatever their clocks say. Under the triplet's hash
// h, "d:h" lives for the delay from the first attempt, "r:h" for the delay
// and the retry window, "p:h" for the expiry after the last pass. Both of
// the first two are counters, so that of attempts made at the same time
// one alone is the first. "f:h" holds when the delay ends, by the
// plugin's clock, only to say how long is left.
func (g *greylist) triplet(network, sender, rcpt string) (time.Duration, error) {
	sum := sha256.Sum256([]byte(network + "\x00" + strings.ToLower(sender) + "\x00" + strings.ToLower(rcpt)))
	h := hex.EncodeToString(sum[:16])
	if _, err := sdk.KVGet("p:" + h); err == nil {
		return 0, g.pass(network, h)
	} else if !errors.Is(err, sdk.ErrNotFound) {
		return 0, err
	}
	d, err := sdk.KVIncr("d:"+h, 1, g.delay)
	if err != nil {
		return 0, err
	}
	if d > 1 { // within the delay
		left := g.delay
		if f, err := sdk.KVGet("f:" + h); err == nil {
			if end, err := strconv.ParseInt(string(f), 10, 64); err == nil {
				left = min(g.delay, max(time.Second, time.UnixMilli(end).Sub(g.now())))
			}
		}
		return left, nil
	}
	r, err := sdk.KVIncr("r:"+h, 1, g.delay+g.window)
	if err != nil {
		return 0, err
	}
	if r == 1 { // the first attempt, or the first since the window closed
		end := g.now().Add(g.delay).UnixMilli()
		if err := sdk.KVSet("f:"+h, []byte(strconv.FormatInt(end, 10)), g.delay); err != nil {
			return 0, err
		}
		return g.delay, nil
	}
	// A retry after the delay and within the window: it passes. The
	// counters are done with; "d:h" was made again by this attempt.
	if err := g.pass(network, h); err != nil {
		return 0, err
	}
	for _, k := range []string{"d:" + h, "r:" + h} {
		if err := sdk.KVDelete(k); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// pass remembers that the triplet h passed, and with auto_allowlist its
// client network, for the expiry from now.
func (g *greylist) pass(network, h string) error {
	if err := sdk.KVSet("p:"+h, []byte("1"), g.expiry); err != nil {
		return err
	}
	if g.auto {
		return sdk.KVSet("n:"+network, []byte("1"), g.expiry)
	}
	return nil
}

// passed is the answer for a network on the auto-allowlist, whose entry
// is renewed: a sender that keeps sending stays on it.
func (g *greylist) passed(network string) sdk.Verdict {
	if err := sdk.KVSet("n:"+network, []byte("1"), g.expiry); err != nil {
		return failure(err)
	}
	return sdk.Continue()
}

// failure is the answer when the store fails: a failure of the plugin, so
// that the operator's on_failure decides between deferring the mail
// (tempfail, the default) and letting it through (skip). A host that
// predates the failure field defers.
func failure(err error) sdk.Verdict {
	v := sdk.Tempfail(451, "4.3.0", "Greylisting not checked, try again later")
	v.Failure = "greylist store: " + err.Error()
	return v
}

// permissions are what the greylist's verdicts need.
func (g *greylist) permissions() abi.Permissions { return abi.MayTempfail }
