package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/auth"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
)

// Parts are the pieces a session hands mail to, all built from one
// configuration. They never change once built: a new configuration makes
// new Parts, which replace these as a whole (Generations).
type Parts struct {
	Chain  *plugin.Chain
	Relay  *relay.Relay
	SRS    *srs.Rewriter
	Signer *dkim.Signer // nil: forward unsigned

	// Chain is the plugins that run on mail arriving for our domains
	// (services "mx"); SubmissionChain those that run on mail our users
	// send (services "submission"), never nil when the submission service
	// is on, though it may have no plugins. A plugin in both is one set of
	// instances, shared (plugin.Chain.For).
	SubmissionChain *plugin.Chain

	// SignRecipientDomain has forwarded mail signed with the keys of the
	// domain it was addressed to as well, when Signer holds some.
	SignRecipientDomain bool
	// Auth checks incoming mail; nil: no checks, no Authentication-Results.
	Auth *auth.Checker
	// Seal seals forwarded mail with ARC; nil: no sealing. It needs Auth,
	// whose ARC verification says which instance comes next.
	Seal *arc.SealConfig
	// TLS is what a STARTTLS handshake uses (the certificate); nil when
	// the server offers no STARTTLS.
	TLS     *tls.Config
	Scoring Scoring // what findings add up to (deliver.go)
	// DNS looks up each client's verified name (forward-confirmed
	// reverse DNS) for the plugins and the Received field; nil: not
	// looked up, and plugins see an empty name and result.
	DNS *resolver.Resolver
	// ClientNameTimeout bounds that lookup, so that a client whose
	// reverse zone does not answer waits this long at most for its first
	// plugin, not every retry of every query; 0: defaultClientNameTimeout.
	ClientNameTimeout time.Duration

	// Logins checks the logins and senders of the submission service;
	// nil when it is off. It is in the generation so that a reload
	// adds or removes users for the next session.
	Logins Logins
}

// Logins are the users of the submission service (issue 15).
type Logins interface {
	// Authenticate checks a login from client. It returns nil for a
	// good one, and otherwise the reply as an *smtp.SMTPError: 535 5.7.8
	// for bad credentials, 454 4.7.0 while the client or the user is
	// throttled or when the check itself failed (retrying can help).
	Authenticate(ctx context.Context, client netip.Addr, user, password string) error
	// MaySend reports whether user may send as addr, in the envelope or
	// in From.
	MaySend(user, addr string) bool
}

func (p *Parts) check() error {
	if p.Chain == nil || p.Relay == nil || p.SRS == nil {
		return errors.New("smtpd: chain, relay and SRS are needed")
	}
	if p.Seal != nil && p.Auth == nil {
		return errors.New("smtpd: ARC sealing needs the authentication checks")
	}
	return nil
}

// close releases what the parts hold: the chain's instances and the
// relay's idle connections. The rest is memory only.
func (p *Parts) close() error {
	var errs []error
	// A plugin in both chains closes once, whichever goes first.
	for _, c := range []*plugin.Chain{p.Chain, p.SubmissionChain} {
		if c != nil {
			errs = append(errs, c.Close(context.Background()))
		}
	}
	if p.Relay != nil {
		errs = append(errs, p.Relay.Close())
	}
	return errors.Join(errs...)
}

// Generations holds the Parts in generations, so that they can be
// replaced while mail flows. Each session takes the current generation
// when it starts and gives it back when it ends; Swap makes a new
// generation current at once, and a generation no longer current is
// closed when the last session using it gives it back. Sessions in flight
// thus finish with the chain, keys, certificate and settings they started
// with, and every session after a swap gets the new ones.
//
// The count is kept by hand rather than by finalizers so that an old
// chain's instances and memory go as soon as its last session ends, not
// at some later garbage collection.
type Generations struct {
	log *slog.Logger

	mu      sync.Mutex
	current *Generation // nil once closed
	open    int         // generations not yet closed, current included
	next    uint64      // number of the next generation
}

// Generation is one set of Parts and the sessions using it.
type Generation struct {
	Parts
	// N numbers generations from 1, for logs and the admin listing.
	N uint64

	holder *Generations
	users  int // sessions holding it, plus one while it is current
}

// NewGenerations makes p the first generation, after checking that it
// has what a session needs. Generations takes ownership of p.
func NewGenerations(p Parts, log *slog.Logger) (*Generations, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Generations{log: log, next: 1}
	h.current = h.newGeneration(p)
	return h, nil
}

func (h *Generations) newGeneration(p Parts) *Generation {
	g := &Generation{Parts: p, N: h.next, holder: h, users: 1}
	h.next++
	h.open++
	return g
}

// Acquire returns the current generation for a new user, who must call
// Release when done with it; nil after Close.
func (h *Generations) Acquire() *Generation {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.current != nil {
		h.current.users++
	}
	return h.current
}

// Release gives the generation back. The last user of a generation that
// is no longer current closes its parts.
func (g *Generation) Release() { g.holder.drop(g) }

// Swap makes p the current generation and returns its number. The
// previous generation closes when its last session releases it.
// Generations takes ownership of p, even on error; after Close, Swap
// closes p and returns 0.
func (h *Generations) Swap(p Parts) (uint64, error) {
	if err := p.check(); err != nil {
		p.close()
		return 0, err
	}
	h.mu.Lock()
	if h.current == nil {
		h.mu.Unlock()
		p.close()
		return 0, nil
	}
	old := h.current
	h.current = h.newGeneration(p)
	n := h.current.N
	h.mu.Unlock()
	h.drop(old) // the holder's own hold on it
	return n, nil
}

// Close drops the current generation; it closes once its sessions are
// done. Acquire returns nil from then on.
func (h *Generations) Close() {
	h.mu.Lock()
	old := h.current
	h.current = nil
	h.mu.Unlock()
	if old != nil {
		h.drop(old)
	}
}

// Open returns how many generations are not closed yet: the current one
// and those that sessions in flight still use.
func (h *Generations) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.open
}

func (h *Generations) drop(g *Generation) {
	h.mu.Lock()
	g.users--
	last := g.users == 0
	if last {
		h.open--
	}
	h.mu.Unlock()
	if !last {
		return
	}
	// Nobody uses the parts any more, so closing does not wait.
	if err := g.close(); err != nil {
		h.log.Warn("closing a retired generation", "generation", g.N, "err", err)
		return
	}
	h.log.Info("generation closed", "generation", g.N)
}
