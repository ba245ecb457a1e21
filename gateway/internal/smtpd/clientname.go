package smtpd

import (
	"context"
	"net/netip"

	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// clientName is the client's forward-confirmed reverse DNS name, looked up
// in the background from the start of the session: the session waits for
// it only when something needs it (a plugin's request, the Received
// field), and by then it is usually known.
type clientName struct {
	done   chan struct{}
	name   string // the verified name, or ""
	result string // resolver.NamePass, ...; "" when not looked up
}

// lookupClientName starts the lookup of ip's name; with no resolver there
// is nothing to look up, and the name and its result stay empty.
func lookupClientName(ctx context.Context, r *resolver.Resolver, ip netip.Addr) *clientName {
	c := &clientName{done: make(chan struct{})}
	if r == nil {
		close(c.done)
		return c
	}
	go func() {
		defer close(c.done)
		c.name, c.result = r.VerifiedName(ctx, ip)
	}()
	return c
}

// wait returns the name and result; temperror if ctx ends first (the
// server is closing).
func (c *clientName) wait(ctx context.Context) (name, result string) {
	select {
	case <-c.done:
		return c.name, c.result
	case <-ctx.Done():
		return "", resolver.NameTempError
	}
}
