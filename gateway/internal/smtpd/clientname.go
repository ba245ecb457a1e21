package smtpd

import (
	"context"
	"net/netip"
	"time"

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

// defaultClientNameTimeout bounds the lookup of a client's name when
// [dns] client_name_timeout is not set: a few round trips to a slow
// server, well under what a sender waits for a reply.
const defaultClientNameTimeout = 5 * time.Second

// lookupClientName starts the lookup of ip's name, which gives up after
// timeout (0: the default) as a temperror; with no resolver there is
// nothing to look up, and the name and its result stay empty.
func lookupClientName(ctx context.Context, r *resolver.Resolver, timeout time.Duration, ip netip.Addr) *clientName {
	c := &clientName{done: make(chan struct{})}
	if r == nil {
		close(c.done)
		return c
	}
	if timeout <= 0 {
		timeout = defaultClientNameTimeout
	}
	go func() {
		defer close(c.done)
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
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

// known returns the name if the lookup has ended, without waiting.
func (c *clientName) known() string {
	select {
	case <-c.done:
		return c.name
	default:
		return ""
	}
}
