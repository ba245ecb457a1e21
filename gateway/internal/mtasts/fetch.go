package mtasts

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Resolver is what fetching policies needs from DNS.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) // "ip6" or "ip4"
}

// Config configures a Fetcher. Zero values get the defaults noted.
type Config struct {
	Resolver    Resolver       // required: TXT records, and the policy host's addresses
	RootCAs     *x509.CertPool // roots for the policy host's certificate; nil = the system's
	Port        int            // the policy host's HTTPS port, default 443 (tests use others)
	DisableIPv6 bool           // never connect to a policy host over IPv6
	Timeout     time.Duration  // for the TXT lookup and the fetch together, default 30s
	// Recheck is how often a domain's TXT record is looked at again, and
	// how long a domain without a usable policy is left alone before it
	// is; default 5 minutes.
	Recheck time.Duration
	// Cache holds the policies; nil = a new one. Give each Fetcher the
	// same Cache to keep policies across a reconfiguration.
	Cache  *Cache
	Logger *slog.Logger
	// Fetched, if set, is told the outcome of each policy fetch: nil or
	// why it failed.
	Fetched func(err error)
	// NotWaited, if set, is told each time a caller stopped waiting for
	// a lookup of a domain without a usable cached policy, because its
	// context ended first; it went on without a policy.
	NotWaited func()
}

const (
	defaultPort    = 443
	defaultTimeout = 30 * time.Second
	defaultRecheck = 5 * time.Minute
)

// Cache holds destinations' policies in memory, by domain. It is safe for
// concurrent use.
type Cache struct {
	mu      sync.Mutex
	domains map[string]*entry
	// sweepAt is the number of domains at which those without a usable
	// policy are forgotten: mail goes to ever more domains (bounces to
	// any sender's), and most publish no policy.
	sweepAt int
}

// minSweepAt is the fewest domains a Cache sweeps at.
const minSweepAt = 1024

// NewCache returns an empty Cache.
func NewCache() *Cache { return &Cache{domains: make(map[string]*entry), sweepAt: minSweepAt} }

// add makes an entry for domain; c.mu must be held.
func (c *Cache) add(domain string, now time.Time) *entry {
	if len(c.domains) >= c.sweepAt {
		for d, e := range c.domains {
			if e.busy == nil && !e.usable(now) {
				delete(c.domains, d)
			}
		}
		// What is left has policies; sweeping again only after as many
		// more keeps the cost per new domain constant.
		c.sweepAt = max(minSweepAt, 2*len(c.domains))
	}
	e := &entry{}
	c.domains[domain] = e
	return e
}

// size is the number of domains held, for tests.
func (c *Cache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.domains)
}

// entry is what is known of one domain. Its fields are guarded by the
// Cache's mutex.
type entry struct {
	policy  *Policy   // nil: none fetched yet, or none usable
	id      string    // the id of the TXT record policy was fetched for
	fetched time.Time // when policy was fetched; it expires MaxAge later
	checked time.Time // when the TXT record was last looked at
	// busy is set while a lookup (and fetch) for the domain runs, and
	// closed when it ends: callers that need its result wait for it
	// rather than start their own.
	busy chan struct{}
}

// usable reports whether e holds a policy that has not expired.
func (e *entry) usable(now time.Time) bool {
	return e.policy != nil && now.Before(e.fetched.Add(e.policy.MaxAge))
}

// lapsed reports whether e's policy expired after the TXT record was last
// looked at. It was in force until then: the domain is looked at again at
// once, rather than its mail going without the policy until Recheck has
// passed (a policy whose max_age is shorter than Recheck would otherwise
// lapse between looks). A policy with max_age 0 never was in force.
func (e *entry) lapsed(now time.Time) bool {
	if e.policy == nil || e.policy.MaxAge == 0 {
		return false
	}
	expires := e.fetched.Add(e.policy.MaxAge)
	return !now.Before(expires) && e.checked.Before(expires)
}

// Fetcher finds the MTA-STS policy of destination domains (RFC 8461 §3,
// §5): the _mta-sts TXT record, then the policy over HTTPS, cached for its
// max_age.
type Fetcher struct {
	cfg   Config
	cache *Cache
	get   *Getter
	log   *slog.Logger
}

// NewFetcher returns a Fetcher for c.
func NewFetcher(c Config) (*Fetcher, error) {
	if c.Resolver == nil {
		return nil, errors.New("mtasts: a resolver is required")
	}
	if c.Port == 0 {
		c.Port = defaultPort
	}
	if c.Timeout <= 0 {
		c.Timeout = defaultTimeout
	}
	if c.Recheck <= 0 {
		c.Recheck = defaultRecheck
	}
	if c.Cache == nil {
		c.Cache = NewCache()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fetcher{cfg: c, cache: c.Cache, log: c.Logger}
	f.get = NewGetter(GetterConfig{Resolver: c.Resolver, RootCAs: c.RootCAs, Port: c.Port, DisableIPv6: c.DisableIPv6, Timeout: c.Timeout})
	return f, nil
}

// Policy returns the policy in force for domain: a cached one that has
// not expired, else the one fetched now. It is the cache's own, shared by
// every caller (a policy fetched later replaces it rather than changing
// it), and must not be changed. ok is false when there is none
// to apply: no MTA-STS record, or a record whose policy cannot be fetched
// and no cached policy (RFC 8461 §5: deliver as without MTA-STS).
//
// A cached policy is returned at once; when its TXT record is due for a
// look, that happens in the background, and the policy is fetched again
// if the record's id changed or half its max_age has passed (so that a
// policy in use does not expire). Concurrent callers for one domain share
// one lookup.
//
// Without a usable cached policy, a caller waits for the lookup only as
// long as its ctx lasts: the lookup runs on its own deadline, so the
// sending client is held no longer than its session allows, and what the
// lookup finds is cached for later callers. One that stops waiting gets
// ok false: no policy is available yet, and RFC 8461 §5 has the mail
// delivered as without MTA-STS (as tls_security says).
func (f *Fetcher) Policy(ctx context.Context, domain string) (p *Policy, ok bool) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := time.Now()
	c := f.cache
	c.mu.Lock()
	e := c.domains[domain]
	if e == nil {
		e = c.add(domain, now)
	}
	due := now.Sub(e.checked) >= f.cfg.Recheck || e.lapsed(now)
	if e.usable(now) {
		if due && e.busy == nil {
			done := f.startLookup(e, now)
			go f.lookup(domain, e, done)
		}
		p := e.policy
		c.mu.Unlock()
		return p, true
	}
	if !due && e.busy == nil {
		// Looked at recently, and nothing usable came of it.
		c.mu.Unlock()
		return nil, false
	}
	done := e.busy
	if done == nil {
		done = f.startLookup(e, now)
		go f.lookup(domain, e, done)
	}
	c.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		f.log.Info("mta-sts: stopped waiting for the policy lookup, which goes on; delivering as without MTA-STS",
			"domain", domain, "err", ctx.Err())
		if f.cfg.NotWaited != nil {
			f.cfg.NotWaited()
		}
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !e.usable(time.Now()) {
		return nil, false
	}
	return e.policy, true
}

// startLookup marks e busy; c.mu must be held.
func (f *Fetcher) startLookup(e *entry, now time.Time) chan struct{} {
	e.busy = make(chan struct{})
	e.checked = now
	return e.busy
}

// lookup reads domain's TXT record and, if it announces a policy other
// than the one cached or the cached one is half way to expiring, fetches
// it. A failure keeps what is cached (RFC 8461 §5.1). It ends by closing
// done. It runs on its own deadline, not a caller's: other callers may be
// waiting for it.
func (f *Fetcher) lookup(domain string, e *entry, done chan struct{}) {
	c := f.cache
	defer func() {
		c.mu.Lock()
		e.busy = nil
		c.mu.Unlock()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Timeout)
	defer cancel()
	txts, err := f.cfg.Resolver.LookupTXT(ctx, "_mta-sts."+domain+".")
	var id string
	if err == nil {
		id, err = ParseRecord(txts)
	}
	if err != nil {
		if !errors.Is(err, ErrNoRecord) && !isNotFound(err) {
			f.log.Info("mta-sts: no usable record", "domain", domain, "err", err)
		}
		return
	}
	c.mu.Lock()
	current := e.policy != nil && e.id == id && time.Since(e.fetched) < e.policy.MaxAge/2
	c.mu.Unlock()
	if current {
		return
	}
	p, err := f.fetch(ctx, domain)
	if f.cfg.Fetched != nil {
		f.cfg.Fetched(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if e.usable(time.Now()) {
			f.log.Warn("mta-sts: policy fetch failed; the cached policy stays in force", "domain", domain, "id", id, "err", err)
		} else {
			f.log.Warn("mta-sts: policy fetch failed; delivering as without MTA-STS", "domain", domain, "id", id, "err", err)
		}
		return
	}
	e.policy, e.id, e.fetched = &p, id, time.Now()
	f.log.Info("mta-sts: policy fetched", "domain", domain, "id", id, "mode", p.Mode, "max_age", p.MaxAge)
}

func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// fetch gets domain's policy from its policy host and parses it.
func (f *Fetcher) fetch(ctx context.Context, domain string) (Policy, error) {
	url := "https://mta-sts." + domain + Path
	text, _, err := f.get.Get(ctx, domain)
	if err != nil {
		return Policy{}, fmt.Errorf("%s: %w", url, err)
	}
	p, err := Parse(text)
	if err != nil {
		return Policy{}, fmt.Errorf("%s: %w", url, err)
	}
	return p, nil
}
