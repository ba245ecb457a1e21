// Package resolver is the DNS client every part of Sluice uses: MX lookups
// for relaying now, SPF/DKIM/DMARC later. It talks to the configured
// nameservers through miekg/dns, caches answers by their TTLs, and answers
// from static records first so that tests and development setups can route
// mail without real DNS.
//
// Errors are *net.DNSError values so callers can inspect them with the
// standard library's type: IsNotFound for NXDOMAIN, IsTimeout/IsTemporary for
// SERVFAIL, timeouts, network errors and bad answers. A name that exists but
// has no records of the asked type (NODATA) is an empty result, not an error.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the resolver's configuration.
type Config struct {
	Nameservers []string         // "ip:port" ("ip" means port 53); empty = from /etc/resolv.conf
	Timeout     time.Duration    // per query attempt; default 5s
	Attempts    int              // per nameserver, default 2
	Static      []string         // zone-file RR lines, e.g. "inbox.test. 300 IN MX 10 mx.inbox.test."
	CacheSize   int              // max cached answers, default 10000; the least recently used go first
	Now         func() time.Time // nil = time.Now; must be safe for concurrent use
	// Metrics receives the counts and latencies of the questions sent to
	// the nameservers; nil: they are counted but registered nowhere.
	Metrics prometheus.Registerer
	// DNSSEC trusts the nameservers to validate: questions ask for the
	// AD bit (RFC 6840 section 5.7) and an answer that carries it counts
	// as secure. Only for validating resolvers on a trusted path.
	DNSSEC bool
}

const (
	defaultTimeout   = 5 * time.Second
	defaultAttempts  = 2
	defaultCacheSize = 10000
	resolvConf       = "/etc/resolv.conf"
)

// Resolver answers DNS queries. It is safe for concurrent use.
type Resolver struct {
	nameservers []string
	timeout     time.Duration
	attempts    int
	dnssec      bool
	cacheSize   int
	static      map[string][]dns.RR // by canonical owner name
	now         func() time.Time
	cache       *cache
	flights     flights
	metrics     *lookupMetrics
}

// key identifies one question.
type key struct {
	name  string // canonical: lower case, absolute
	qtype uint16
}

// New builds a Resolver from c, filling in defaults.
func New(c Config) (*Resolver, error) {
	r := &Resolver{
		timeout:  c.Timeout,
		attempts: c.Attempts,
		dnssec:   c.DNSSEC,
		now:      c.Now,
		flights:  flights{calls: map[key]*call{}},
		metrics:  newLookupMetrics(c.Metrics),
	}
	if r.timeout <= 0 {
		r.timeout = defaultTimeout
	}
	if r.attempts <= 0 {
		r.attempts = defaultAttempts
	}
	if r.now == nil {
		r.now = time.Now
	}
	size := c.CacheSize
	if size <= 0 {
		size = defaultCacheSize
	}
	r.cache, r.cacheSize = newCache(size), size

	var err error
	if r.nameservers, err = nameservers(c.Nameservers); err != nil {
		return nil, err
	}
	if r.static, err = parseStatic(c.Static); err != nil {
		return nil, err
	}
	return r, nil
}

// Reconfigured returns a resolver with c's settings that shares r's cache
// and metrics (c.CacheSize and c.Metrics are not used), so that a reload
// of the configuration does not forget every answer nor count twice. Static records are answered before the cache
// is asked and never enter it, so a change of them takes effect at once.
// A change of DNSSEC starts an empty cache of the same size instead: the
// answers cached before were asked for and trusted differently.
func (r *Resolver) Reconfigured(c Config) (*Resolver, error) {
	n, err := New(Config{Nameservers: c.Nameservers, Timeout: c.Timeout, Attempts: c.Attempts, Static: c.Static,
		CacheSize: 1, Now: c.Now, DNSSEC: c.DNSSEC})
	if err != nil {
		return nil, err
	}
	n.cache, n.cacheSize, n.metrics = r.cache, r.cacheSize, r.metrics
	if n.dnssec != r.dnssec {
		n.cache = newCache(r.cacheSize)
	}
	return n, nil
}

// nameservers normalises the configured list to "ip:port", or reads the
// system's list when none is configured.
func nameservers(configured []string) ([]string, error) {
	if len(configured) == 0 {
		cc, err := dns.ClientConfigFromFile(resolvConf)
		if err != nil {
			return nil, fmt.Errorf("resolver: no nameservers configured and %v", err)
		}
		if len(cc.Servers) == 0 {
			return nil, fmt.Errorf("resolver: no nameservers configured and none in %s", resolvConf)
		}
		var out []string
		for _, s := range cc.Servers {
			out = append(out, net.JoinHostPort(s, cc.Port))
		}
		return out, nil
	}
	var out []string
	for _, s := range configured {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.AddrPortFrom(ip, 53).String())
			continue
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, fmt.Errorf("resolver: nameserver %q: want ip:port", s)
		}
		out = append(out, ap.String())
	}
	return out, nil
}

// parseStatic reads zone-file RR lines into records by owner name.
func parseStatic(lines []string) (map[string][]dns.RR, error) {
	static := map[string][]dns.RR{}
	for i, line := range lines {
		rr, err := dns.NewRR(line)
		if err != nil {
			return nil, fmt.Errorf("resolver: static record %d %q: %v", i+1, line, err)
		}
		if rr == nil { // blank or only a comment
			continue
		}
		name := dns.CanonicalName(rr.Header().Name)
		static[name] = append(static[name], rr)
	}
	return static, nil
}

// Query returns the records of type qtype for name, after following CNAMEs.
// The records are copies the caller may keep and change.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	rrs, _, err := r.lookup(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out, nil
}

// lookup is Query without the copy: the records it returns are shared with
// the cache and must not be changed. secure says the answer (records or
// NODATA) was validated: the nameservers set the AD bit and DNSSEC is on.
// Static records count as secure when DNSSEC is on: they come from the
// configuration, which is trusted as much as the nameservers are.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (rrs []dns.RR, secure bool, err error) {
	k := key{dns.CanonicalName(name), qtype}
	if _, ok := dns.IsDomainName(k.name); !ok {
		return nil, false, &net.DNSError{Err: "invalid domain name", Name: name, IsNotFound: true}
	}
	for range maxCNAMEChain {
		rrs, cname, ok := r.fromStatic(k)
		if !ok {
			return r.fromNameservers(ctx, k)
		}
		if cname == "" {
			return rrs, r.dnssec, nil
		}
		k.name = cname
	}
	return nil, false, &net.DNSError{Err: "static CNAME chain too long", Name: name, IsTemporary: true}
}

// fromStatic answers k from the static records if they hold its name. A
// static CNAME that does not answer k itself is returned for the caller to
// follow.
func (r *Resolver) fromStatic(k key) (rrs []dns.RR, cname string, ok bool) {
	all, ok := r.static[k.name]
	if !ok {
		return nil, "", false
	}
	for _, rr := range all {
		if rr.Header().Rrtype == k.qtype {
			rrs = append(rrs, rr)
		} else if c, isCNAME := rr.(*dns.CNAME); isCNAME {
			cname = dns.CanonicalName(c.Target)
		}
	}
	if len(rrs) > 0 {
		return rrs, "", true
	}
	return nil, cname, true
}

// fromNameservers answers k from the cache, or asks the nameservers once for
// all concurrent callers. The query itself does not stop when ctx does (its
// answer is still worth caching) but the caller stops waiting.
func (r *Resolver) fromNameservers(ctx context.Context, k key) ([]dns.RR, bool, error) {
	res, ok := r.cache.get(k, r.now())
	if !ok {
		var err error
		res, err = r.flights.do(ctx, k, func() answer { return r.resolve(k) })
		if err != nil {
			return nil, false, &net.DNSError{
				Err:         err.Error(),
				Name:        k.name,
				IsTimeout:   errors.Is(err, context.DeadlineExceeded),
				IsTemporary: errors.Is(err, context.DeadlineExceeded),
				UnwrapErr:   err,
			}
		}
	}
	if res.err != nil {
		e := *res.err // callers get their own copy of the cached error
		return nil, false, &e
	}
	return res.rrs, res.secure, nil
}

// resolve asks the nameservers and caches what they say for as long as the
// caching rules allow.
func (r *Resolver) resolve(k key) answer {
	start := time.Now()
	res, ttl := r.exchange(k)
	r.metrics.lookup(k.qtype, res.err, time.Since(start))
	if ttl > 0 {
		r.cache.put(k, res, r.now().Add(ttl))
	}
	return res
}
