// Package auth runs the authentication checks on incoming mail (SPF,
// DKIM, ARC, DMARC) while the session goes on, and writes what it found as
// an Authentication-Results field (RFC 8601). It finds facts; plugins
// decide what to do about them.
package auth

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/spf"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// Config says which checks run.
type Config struct {
	Hostname string // the authserv-id of our Authentication-Results
	Resolver *resolver.Resolver
	// Timeout bounds each message's checks as a whole, so that slow DNS
	// delays a message by at most this much; what is unfinished by then
	// is temperror.
	Timeout time.Duration
	// DMARCDiscovery is how DMARC records and organizational domains are
	// found: RFC 9989's tree walk (the zero value) or RFC 7489's list.
	DMARCDiscovery dmarc.Discovery
	Now            func() time.Time
}

// Checker runs the checks. It is safe for concurrent use.
type Checker struct {
	cfg  Config
	spf  *spf.Checker
	keys *dkim.KeyCache // DKIM and ARC keys parsed before
}

// New returns a Checker.
func New(c Config) *Checker {
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Checker{cfg: c, spf: spf.New(c.Resolver), keys: dkim.NewKeyCache()}
}

// SPF is an SPF check running in the background from MAIL FROM on.
type SPF struct {
	done chan struct{}
	res  abi.SPF
}

// StartSPF checks the MAIL FROM and HELO identities of a transaction
// without making the session wait; Wait collects the result.
func (c *Checker) StartSPF(ctx context.Context, ip netip.Addr, helo, from string) *SPF {
	s := &SPF{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
		var wg sync.WaitGroup
		var mailFrom, heloRes spf.Result
		wg.Go(func() { mailFrom = c.spf.MailFrom(ctx, ip, helo, from) })
		wg.Go(func() { heloRes = c.spf.Helo(ctx, ip, helo) })
		wg.Wait()
		s.res = abi.SPF{Result: mailFrom.Result, Domain: mailFrom.Domain, Helo: heloRes.Result}
	}()
	return s
}

// Wait returns the SPF result, or temperror if ctx ends first.
func (s *SPF) Wait(ctx context.Context) abi.SPF {
	if s == nil {
		return abi.SPF{}
	}
	select {
	case <-s.done:
		return s.res
	case <-ctx.Done():
		return abi.SPF{Result: "temperror"}
	}
}

// Report is what the checks found about one message.
type Report struct {
	Auth abi.Auth
	// ARC is the chain as verified, which sealing builds on.
	ARC arc.Result
	// dkim keeps the signatures' details for Authentication-Results.
	dkim []dkim.Result
}

// Message verifies the message's DKIM signatures and ARC chain at the same
// time, then evaluates DMARC from them and the SPF result. header is the
// message's header as the gateway parsed it, once: DKIM, ARC and DMARC all
// read its fields rather than each splitting the message again; body,
// made once with it, hashes each canonical form once for DKIM, ARC and
// the signing that follows.
func (c *Checker) Message(ctx context.Context, header *message.Header, body *dkim.Body, spfRes abi.SPF) Report {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	lookup := c.cfg.Resolver.LookupTXT
	var r Report
	var wg sync.WaitGroup
	wg.Go(func() {
		r.dkim = dkim.VerifyHeader(ctx, header, body, dkim.VerifyOptions{Lookup: lookup, Now: c.cfg.Now, Keys: c.keys})
	})
	wg.Go(func() {
		r.ARC = arc.VerifyHeader(ctx, header, body, arc.VerifyOptions{Lookup: lookup, Now: c.cfg.Now, Keys: c.keys})
	})
	wg.Wait()

	r.Auth.SPF = spfRes
	ids := dmarc.Identifiers{SPFResult: spfRes.Result, SPFDomain: spfRes.Domain}
	for _, d := range r.dkim {
		r.Auth.DKIM = append(r.Auth.DKIM, abi.DKIM{Result: d.Result, Domain: d.Domain, Selector: d.Selector, Reason: d.Reason})
		ids.DKIM = append(ids.DKIM, dmarc.DKIMResult{Result: d.Result, Domain: d.Domain})
	}
	r.Auth.ARC = abi.ARC{
		Result:     r.ARC.CV,
		Instances:  uint32(r.ARC.Instances),
		OldestPass: uint32(r.ARC.OldestPass),
		Reason:     r.ARC.Reason,
	}
	for _, s := range r.ARC.Sealers {
		r.Auth.ARC.Sealers = append(r.Auth.ARC.Sealers, s.Domain)
	}

	from, err := dmarc.FromDomain(header)
	if err != nil {
		r.Auth.DMARC = abi.DMARC{Result: "permerror", Reason: err.Error()}
		return r
	}
	d := dmarc.Evaluate(ctx, c.cfg.Resolver, c.cfg.DMARCDiscovery, from, ids)
	r.Auth.DMARC = abi.DMARC{
		Result:       d.Result,
		FromDomain:   d.FromDomain,
		PolicyDomain: d.PolicyDomain,
		Policy:       d.Policy,
		Pct:          uint32(d.Pct),
		SPFAligned:   d.SPFAligned,
		DKIMAligned:  d.DKIMAligned,
		Reason:       d.Reason,
	}
	return r
}
