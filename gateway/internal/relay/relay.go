// Package relay is Sluice's outbound SMTP client. It delivers a message to
// the destination domain's MX while the sending client is still connected,
// and turns every outcome into an SMTP reply that can be passed back to that
// client as Sluice's own.
package relay

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
)

// Resolver is what relay needs from DNS. Errors are *net.DNSError: IsNotFound
// for NXDOMAIN, else temporary. NODATA is an empty result with a nil error.
// MX hosts keep their trailing dot; a single "." host is a null MX.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)                // sorted by preference
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) // "ip6" or "ip4"
}

// Config is the relay's configuration. Zero values get the defaults noted.
type Config struct {
	Helo           string        // EHLO name where no source has one (required)
	Port           int           // destination port, default 25 (tests and the demo use others)
	Sources        []Source      // local addresses for new connections; none of a family = the kernel picks
	DisableIPv6    bool          // never try AAAA
	ConnectTimeout time.Duration // default 30s per address
	CommandTimeout time.Duration // default 5m (RFC 5321 §4.5.3.2)
	DataTimeout    time.Duration // for the reply to the end of data, default 10m
	MaxIdle        int           // idle connections kept per destination host for IdleTimeout, default 4 (more are kept for a second); negative = none
	IdleTimeout    time.Duration // how long an idle connection is kept, default 10s
	// Security is the least TLS every destination gets (May by
	// default); a destination's MTA-STS policy or DANE, or a message's
	// REQUIRETLS, may ask for more.
	Security Security
	// RootCAs verify destinations' certificates (Verify, MTA-STS); nil =
	// the system's.
	RootCAs *x509.CertPool
	// MTASTS, if set, finds destinations' MTA-STS policies (RFC 8461).
	MTASTS *mtasts.Fetcher
	// DANE honours destinations' TLSA records (RFC 7672, see dane.go).
	// The resolver must be a DANEResolver whose secure answers are
	// DNSSEC-validated.
	DANE bool
	// TLSResult, if set, is told the result of each TLS check (see
	// tls.go): for each transaction started (or refused) under
	// tls_security encrypt or verify, a domain's MTA-STS policy, a
	// host's TLSA records or a message's REQUIRETLS, the policy, its
	// mode and the result ("ok" or what failed, as TLS reporting names
	// it); for each transaction started under none of them, Policy "".
	// With the destination domain, host and address, for TLS reports.
	TLSResult func(TLSCheck)
	Logger    *slog.Logger
	// Observe, if set, is told how long each step with a destination
	// took: "connect" (TCP, greeting, EHLO and STARTTLS of a new
	// connection), "mail" (MAIL FROM and the first RCPT TO, pipelined
	// when offered), "rcpt" (each later RCPT TO) and "data" (DATA to the
	// reply to the end of data). Steps that failed are told too.
	Observe func(step string, took time.Duration)
}

const (
	defaultPort           = 25
	defaultConnectTimeout = 30 * time.Second
	defaultCommandTimeout = 5 * time.Minute
	defaultDataTimeout    = 10 * time.Minute
	defaultMaxIdle        = 4
	defaultIdleTimeout    = 10 * time.Second

	// maxAddresses bounds the fresh connections one Begin attempts, so a
	// domain with many dead MX hosts cannot hold the sending client for an
	// hour (Postfix's smtp_mx_address_limit exists for the same reason).
	maxAddresses = 10
)

// Relay opens and reuses connections to destination MX hosts. It is safe
// for concurrent use; each Txn belongs to one goroutine.
type Relay struct {
	cfg      Config
	resolver Resolver
	log      *slog.Logger
	pool     *pool
	dane     DANEResolver // nil without Config.DANE
	// sources are Config.Sources by family, each list used in turn.
	ipv4, ipv6 sourceList
}

// New checks c, fills in defaults and returns a Relay that resolves
// destinations with r.
func New(c Config, r Resolver) (*Relay, error) {
	if r == nil {
		return nil, errors.New("relay: a resolver is required")
	}
	if c.Helo == "" {
		return nil, errors.New("relay: Helo is required")
	}
	if err := checkHelo(c.Helo); err != nil {
		return nil, err
	}
	if c.Port < 0 || c.Port > 65535 {
		return nil, fmt.Errorf("relay: Port %d is out of range", c.Port)
	}
	c.Sources = slices.Clone(c.Sources) // defaults filled in below are ours
	for i, src := range c.Sources {
		if !src.Addr.IsValid() || src.Addr.Is4In6() || src.Addr.Zone() != "" || !src.Addr.IsGlobalUnicast() && !src.Addr.IsLoopback() {
			return nil, fmt.Errorf("relay: source %s is not an IPv4 or IPv6 unicast address", src.Addr)
		}
		if src.Helo == "" {
			c.Sources[i].Helo = c.Helo
		} else if err := checkHelo(src.Helo); err != nil {
			return nil, err
		}
	}
	if c.Security < May || c.Security > Verify {
		return nil, fmt.Errorf("relay: Security %d is not May, Encrypt or Verify", c.Security)
	}
	if c.Port == 0 {
		c.Port = defaultPort
	}
	c.ConnectTimeout = orDefault(c.ConnectTimeout, defaultConnectTimeout)
	c.CommandTimeout = orDefault(c.CommandTimeout, defaultCommandTimeout)
	c.DataTimeout = orDefault(c.DataTimeout, defaultDataTimeout)
	c.IdleTimeout = orDefault(c.IdleTimeout, defaultIdleTimeout)
	switch {
	case c.MaxIdle == 0:
		c.MaxIdle = defaultMaxIdle
	case c.MaxIdle < 0:
		c.MaxIdle = 0
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var dane DANEResolver
	if c.DANE {
		var ok bool
		if dane, ok = r.(DANEResolver); !ok {
			return nil, errors.New("relay: DANE needs a resolver that tells DNSSEC-validated answers")
		}
	}
	relay := &Relay{
		cfg:      c,
		resolver: r,
		log:      c.Logger,
		pool:     newPool(c.MaxIdle, c.IdleTimeout),
		dane:     dane,
	}
	for _, src := range c.Sources {
		l := relay.sourcesFor(src.Addr)
		l.sources = append(l.sources, src)
	}
	return relay, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Close closes the idle connections. Transactions still open are not
// affected, but their connections are closed instead of kept when they end.
func (r *Relay) Close() error {
	r.pool.closeAll()
	return nil
}

// Begin finds the domain's MX hosts and opens or reuses a connection,
// then sends MAIL FROM and RCPT TO for the transaction's first recipient,
// to: in one write when the destination offers PIPELINING (RFC 2920).
//
// err is the answer to MAIL FROM, or why no destination took it; when it
// is nil, the transaction is open and rcptErr is the answer to RCPT TO, as
// Txn.Rcpt gives it for the recipients after the first. Every error is an
// *smtp.SMTPError for the client.
func (r *Relay) Begin(ctx context.Context, domain, from string, opts *smtp.MailOptions, to string) (txn *Txn, rcptErr, err error) {
	if strings.ContainsAny(from, "\r\n") {
		return nil, nil, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7},
			Message: "Sender address contains a line break"}
	}
	if err := checkRecipient(to); err != nil {
		return nil, nil, err
	}
	hosts, mxSecure, err := r.mxHosts(ctx, domain)
	if err != nil {
		return nil, nil, err
	}
	requireTLS := opts != nil && opts.RequireTLS
	policy := r.tlsPolicyFor(ctx, domain, requireTLS, mxSecure)
	env := envelope{from: from, opts: opts, to: to}
	tried := &attempts{domain: domain}
	unlisted := 0 // hosts left out because the policy does not vouch for them
	for _, host := range hosts {
		if policy.skips(host) && (r.dane == nil || !mxSecure) {
			// Not in the enforced MTA-STS policy (or not vouched for,
			// for REQUIRETLS), and no TLSA records can make up for
			// that: not even looked up.
			unlisted++
			tried.note(fmt.Sprintf("%s: not tried, %s", host, policy.skipReason(host)))
			continue
		}
		ips, ipsSecure := r.addresses(ctx, host, tried)
		req, use := r.requirement(ctx, policy, host, mxSecure && ipsSecure && len(ips) > 0, tried)
		if req.leftOut {
			unlisted++
			tried.note(fmt.Sprintf("%s: not tried, %s", host, policy.skipReason(host)))
		}
		if !use {
			continue
		}
		for _, ip := range ips {
			if tried.dialed >= maxAddresses || ctx.Err() != nil {
				return nil, nil, tried.failure(ctx)
			}
			txn, rcptErr, err := r.tryAddress(ctx, host, ip, env, req, tried)
			if txn != nil || err != nil {
				return txn, rcptErr, err
			}
		}
	}
	if unlisted == len(hosts) {
		return nil, nil, r.noListedHost(domain, hosts, policy)
	}
	return nil, nil, tried.failure(ctx)
}

// mxHosts returns the host names to try, best first, without trailing
// dots, and whether DNSSEC vouched for them (only asked with DANE).
func (r *Relay) mxHosts(ctx context.Context, domain string) ([]string, bool, error) {
	mxs, secure, err := r.lookupMX(ctx, domain)
	if err != nil {
		if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
			return nil, false, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2},
				Message: fmt.Sprintf("%s: domain does not exist", domain)}
		}
		return nil, false, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 3},
			Message: fmt.Sprintf("%s: MX lookup failed: %s", domain, describe(err))}
	}
	if len(mxs) == 0 {
		// RFC 5321 §5.1: without MX records the domain is its own host.
		return []string{normalizeHost(domain)}, secure, nil
	}
	// The Resolver sorts, and shuffles equal preferences as RFC 5321 §5.1
	// asks; a stable sort keeps that order and costs nothing.
	mxs = slices.Clone(mxs)
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	var hosts []string
	for _, mx := range mxs {
		// RFC 7505: a null MX must stand alone; if it does not, the
		// usable hosts beside it still count.
		if h := normalizeHost(mx.Host); h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, false, &smtp.SMTPError{Code: 556, EnhancedCode: smtp.EnhancedCode{5, 1, 10},
			Message: fmt.Sprintf("%s: domain does not accept mail (null MX)", domain)}
	}
	return hosts, secure, nil
}

// noListedHost is the reply when the domain's enforced MTA-STS policy
// names none of its MX hosts (and none has TLSA records that take its
// place): a 4xx, as the policy may be stale, and the domain may fix its MX
// or its policy.
func (r *Relay) noListedHost(domain string, hosts []string, policy tlsPolicy) error {
	r.tlsResult(policy.forHost(hosts[0], nil), netip.Addr{}, resultMXNotInPolicy)
	if policy.requireTLS {
		// RFC 8689 §4.2.1: the message must not go, and the sender is
		// told so (5.7.10, as for a TLS session that cannot be had):
		// retrying will not make the domain sign its zone or publish
		// a policy.
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 10},
			Message: fmt.Sprintf("%s: REQUIRETLS: no MX host is vouched for by DNSSEC or named by an MTA-STS policy (%s), and this message requires it",
				domain, strings.Join(hosts, ", "))}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message: fmt.Sprintf("%s: %s: no MX host is in the policy (%s; the policy has %s)",
			domain, policy.name(), strings.Join(hosts, ", "), strings.Join(policy.sts.MX, ", "))}
}

// normalizeHost makes a host name comparable: lower case, no trailing dot.
func normalizeHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// addresses returns host's addresses, IPv6 first (RFC 6724 preference for
// dual-stack hosts), noting in tried what DNS said, and whether DNSSEC
// vouched for every answer that gave addresses (only asked with DANE).
func (r *Relay) addresses(ctx context.Context, host string, tried *attempts) ([]netip.Addr, bool) {
	networks := []string{"ip6", "ip4"}
	if r.cfg.DisableIPv6 {
		networks = networks[1:]
	}
	var out []netip.Addr
	failed, secure := false, true
	for _, network := range networks {
		ips, ipsSecure, err := r.lookupNetIP(ctx, network, host+".")
		if err != nil {
			failed = true
			tried.dnsFailure(host, network, err)
			continue
		}
		secure = secure && (ipsSecure || len(ips) == 0)
		for _, ip := range ips {
			ip = ip.Unmap()
			if ip.Is6() != (network == "ip6") || slices.Contains(out, ip) {
				continue
			}
			out = append(out, ip)
		}
	}
	if len(out) > 0 {
		tried.foundAddress = true
	} else if !failed {
		tried.note(host + ": no addresses")
	}
	return out, secure
}

// tryAddress starts the transaction at one address: on an idle connection
// to it if there is one, else, or if that one fails before its first
// reply (openNow), on a fresh one. It returns a Txn (and the reply to
// RCPT TO), a final error for the client, or neither when Begin should
// try the next address.
//
// req is what the connection must have: an idle one with less is left for
// other transactions, and a fresh one with less is closed.
func (r *Relay) tryAddress(ctx context.Context, host string, ip netip.Addr, env envelope, req requirement, tried *attempts) (*Txn, error, error) {
	if s := r.pool.get(host, ip, req); s != nil {
		s.reused = true
		start := time.Now()
		mailErr, rcptErr := s.open(ctx, env)
		r.observe("mail", start)
		if mailErr == nil || isFinalReply(mailErr) || isTransientReply(mailErr) {
			return r.started(s, req, mailErr, rcptErr, tried)
		}
		// Closed by the destination while it sat idle (that is normal),
		// or out of step: either way the destination has not answered
		// this transaction yet, and a fresh connection will.
		r.log.Debug("relay: reused connection failed, retrying on a fresh one", "remote", s.remote(), "err", mailErr)
		s.abort()
	}

	tried.dialed++
	s, err := r.dial(ctx, host, ip, req, true)
	if hsErr, ok := errors.AsType[*tlsHandshakeError](err); ok {
		if req.need == May {
			// Like Postfix: a destination that offers STARTTLS but
			// cannot complete it still gets the mail, in plaintext.
			r.log.Warn("relay: TLS handshake failed, retrying without TLS",
				"remote", formatRemote(host, netip.AddrPortFrom(ip, uint16(r.cfg.Port))), "err", err)
			s, err = r.dial(ctx, host, ip, req, false)
			if s != nil {
				s.tlsErr = hsErr
			}
		} else {
			err = &tlsPolicyError{result: resultFailed, err: fmt.Errorf("TLS handshake failed: %s", describe(hsErr.err))}
		}
	}
	if policyErr, ok := errors.AsType[*tlsPolicyError](err); ok {
		r.tlsResult(req.refusing(), ip, policyErr.result)
		tried.policy = req.name
	}
	if err != nil {
		tried.note(fmt.Sprintf("%s: %s", formatRemote(host, netip.AddrPortFrom(ip, uint16(r.cfg.Port))), describe(err)))
		return nil, nil, nil
	}
	start := time.Now()
	mailErr, rcptErr := s.open(ctx, env)
	r.observe("mail", start)
	if mailErr != nil && !isFinalReply(mailErr) && !isTransientReply(mailErr) {
		s.abort()
		tried.note(fmt.Sprintf("%s: MAIL FROM: %s", s.remote(), describe(mailErr)))
		return nil, nil, nil
	}
	return r.started(s, req, mailErr, rcptErr, tried)
}

// started finishes tryAddress once the destination has answered MAIL FROM
// with a reply that leaves the connection usable.
func (r *Relay) started(s *session, req requirement, mailErr, rcptErr error, tried *attempts) (*Txn, error, error) {
	r.judge(req, s)
	if mailErr == nil {
		t := &Txn{relay: r, s: s, remote: s.remote(), tlsVersion: s.tlsVersion}
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			// Checked first: the arguments alone would cost two
			// allocations per message at the usual level, info.
			r.log.Debug("relay: transaction started", "remote", t.remote, "tls", s.tlsVersion != 0)
		}
		return t, t.rcptResult(rcptErr), nil
	}
	if s.broken {
		s.abort()
	} else {
		r.pool.put(s)
	}
	if isFinalReply(mailErr) {
		return nil, nil, cleanReply(mailErr.(*smtp.SMTPError))
	}
	tried.note(fmt.Sprintf("%s: MAIL FROM: %s", s.remote(), describe(mailErr)))
	return nil, nil, nil
}

// observe tells Config.Observe how long a step since start took.
func (r *Relay) observe(step string, start time.Time) {
	if r.cfg.Observe != nil {
		r.cfg.Observe(step, time.Since(start))
	}
}

// isFinalReply reports whether err is a 5xx reply, which ends the attempt
// for every MX host: they all act for the same domain.
func isFinalReply(err error) bool {
	reply, ok := errors.AsType[*smtp.SMTPError](err)
	return ok && reply.Code/100 == 5
}

// isTransientReply reports whether err is a 4xx reply after which the
// connection is still in a known state (421 means the server is closing).
func isTransientReply(err error) bool {
	reply, ok := errors.AsType[*smtp.SMTPError](err)
	return ok && reply.Code/100 == 4 && reply.Code != 421
}

// attempts collects why each destination failed, for the reply to the
// client when none works.
type attempts struct {
	domain string
	// policy names the TLS policy a destination failed, if one did: the
	// reply is then about it.
	policy       string
	notes        []string
	dialed       int
	foundAddress bool
	dnsTemporary bool
}

func (a *attempts) note(s string) { a.notes = append(a.notes, s) }

func (a *attempts) dnsFailure(host, network string, err error) {
	rr := "A"
	if network == "ip6" {
		rr = "AAAA"
	}
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
		a.note(fmt.Sprintf("%s: no such host (%s)", host, rr))
		return
	}
	a.dnsTemporary = true
	a.note(fmt.Sprintf("%s: %s lookup failed: %s", host, rr, describe(err)))
}

// failure is the reply when no destination took the transaction.
func (a *attempts) failure(ctx context.Context) *smtp.SMTPError {
	if ctx.Err() != nil {
		a.note("gave up: " + ctx.Err().Error())
	} else if a.dialed >= maxAddresses {
		a.note(fmt.Sprintf("gave up after %d addresses", maxAddresses))
	}
	detail := truncate(strings.Join(a.notes, "; "), maxReplyDetail)
	switch {
	case a.policy == nameRequireTLS:
		// RFC 8689 §4.2.1: with no more MX hosts, the message must not
		// be sent and a non-delivery notification goes to the sender,
		// with 5.7.10 for a TLS session that could not be had. In
		// session, that is a 5xx: the sender bounces it.
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 10},
			Message: fmt.Sprintf("%s: %s: %s", a.domain, a.policy, detail)}
	case a.policy != "":
		// Never a 5xx: the destination may fix its certificate or its
		// records, or DNS answer again; and never plaintext instead:
		// the policy is there to prevent that.
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5},
			Message: fmt.Sprintf("%s: %s: %s", a.domain, a.policy, detail)}
	case a.foundAddress:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1},
			Message: fmt.Sprintf("%s: no destination reachable: %s", a.domain, detail)}
	case a.dnsTemporary || ctx.Err() != nil:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 3},
			Message: fmt.Sprintf("%s: cannot resolve destination hosts: %s", a.domain, detail)}
	default:
		// RFC 5321 §5.1: MX hosts (or an implicit MX) without addresses
		// are an error, and retrying will not fix them.
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 4, 4},
			Message: fmt.Sprintf("%s: no destination host has an address: %s", a.domain, detail)}
	}
}
