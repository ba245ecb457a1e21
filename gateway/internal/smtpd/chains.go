package smtpd

import (
	"context"
	"log/slog"
	"sync"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
)

// Chains holds the filter chain in generations, so that it can be
// replaced while mail flows. Each session takes the current generation
// when it starts and gives it back when it ends; Swap makes a new
// generation current at once, and a generation no longer current is
// closed when the last session using it gives it back. Sessions in flight
// thus finish on the chain they started with, and every session after a
// swap gets the new one.
//
// The count is kept by hand rather than by finalizers so that an old
// chain's instances and memory go as soon as its last session ends, not
// at some later garbage collection.
type Chains struct {
	log *slog.Logger

	mu      sync.Mutex
	current *Generation // nil once closed
	open    int         // generations not yet closed, current included
	next    uint64      // number of the next generation
}

// Generation is one chain and the sessions using it.
type Generation struct {
	Chain *plugin.Chain
	// N numbers generations from 1, for logs and the admin listing.
	N uint64

	holder *Chains
	users  int // sessions holding it, plus one while it is current
}

// NewChains makes c the first generation. Chains takes ownership of c.
func NewChains(c *plugin.Chain, log *slog.Logger) *Chains {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Chains{log: log, next: 1}
	h.current = h.newGeneration(c)
	return h
}

func (h *Chains) newGeneration(c *plugin.Chain) *Generation {
	g := &Generation{Chain: c, N: h.next, holder: h, users: 1}
	h.next++
	h.open++
	return g
}

// Acquire returns the current generation for a new user, who must call
// Release when done with it; nil after Close.
func (h *Chains) Acquire() *Generation {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.current != nil {
		h.current.users++
	}
	return h.current
}

// Release gives the generation back. The last user of a generation that
// is no longer current closes its chain.
func (g *Generation) Release() { g.holder.drop(g) }

// Swap makes c the current chain and returns its generation number. The
// previous generation closes when its last session releases it.
// Chains takes ownership of c; after Close, Swap closes c.
func (h *Chains) Swap(c *plugin.Chain) uint64 {
	h.mu.Lock()
	if h.current == nil {
		h.mu.Unlock()
		c.Close(context.Background())
		return 0
	}
	old := h.current
	h.current = h.newGeneration(c)
	n := h.current.N
	h.mu.Unlock()
	h.drop(old) // the holder's own hold on it
	return n
}

// Close drops the current generation; it closes once its sessions are
// done. Acquire returns nil from then on.
func (h *Chains) Close() {
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
func (h *Chains) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.open
}

func (h *Chains) drop(g *Generation) {
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
	// Nobody calls the chain any more, so closing does not wait.
	if err := g.Chain.Close(context.Background()); err != nil {
		h.log.Warn("closing a retired filter chain", "generation", g.N, "err", err)
		return
	}
	h.log.Info("filter chain closed", "generation", g.N)
}
