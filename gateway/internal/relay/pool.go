package relay

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// pool keeps idle destination connections, each for at most timeout.
// Every connection in it is between transactions. Per MX host it keeps up
// to max, or as many as there are transactions open to the host if that
// is more: under load, each connection that finishes a transaction is
// wanted again a moment later by one of the sessions still coming, and
// closing it would cost the next one a connect, greeting and EHLO.
type pool struct {
	max     int
	timeout time.Duration

	mu     sync.Mutex
	closed bool
	idle   map[string][]*idleSession // by MX host, oldest first
	open   map[string]int            // transactions in progress, by MX host
}

type idleSession struct {
	s     *session
	timer *time.Timer // closes s when it has been idle too long
}

func newPool(max int, timeout time.Duration) *pool {
	return &pool{max: max, timeout: timeout, idle: make(map[string][]*idleSession), open: make(map[string]int)}
}

// get takes the most recently used idle connection to (host, ip), or
// returns nil.
func (p *pool) get(host string, ip netip.Addr) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[host]
	for i := len(list) - 1; i >= 0; i-- {
		if e := list[i]; e.s.addr.Addr() == ip {
			p.remove(host, i)
			e.timer.Stop()
			return e.s
		}
	}
	return nil
}

// begin counts a transaction starting on a connection to host.
func (p *pool) begin(host string) {
	p.mu.Lock()
	p.open[host]++
	p.mu.Unlock()
}

// end counts a transaction to host as over, after its connection was put
// back or closed.
func (p *pool) end(host string) {
	p.mu.Lock()
	if p.open[host]--; p.open[host] <= 0 {
		delete(p.open, host)
	}
	p.mu.Unlock()
}

// put keeps s for reuse, evicting the host's oldest idle connections
// while the host is at its limit: max, or the transactions open to it
// (the one s just finished included).
func (p *pool) put(s *session) {
	p.mu.Lock()
	if p.closed || p.max <= 0 {
		p.mu.Unlock()
		s.quit()
		return
	}
	limit := max(p.max, p.open[s.host])
	var evicted []*session
	for list := p.idle[s.host]; len(list) >= limit; list = p.idle[s.host] {
		evicted = append(evicted, list[0].s)
		list[0].timer.Stop()
		p.remove(s.host, 0)
	}
	e := &idleSession{s: s}
	e.timer = time.AfterFunc(p.timeout, func() { p.expire(e) })
	p.idle[s.host] = append(p.idle[s.host], e)
	p.mu.Unlock()
	for _, old := range evicted {
		old.quit()
	}
}

// expire closes e unless get took it first.
func (p *pool) expire(e *idleSession) {
	p.mu.Lock()
	i := slices.Index(p.idle[e.s.host], e)
	if i >= 0 {
		p.remove(e.s.host, i)
	}
	p.mu.Unlock()
	if i >= 0 {
		e.s.quit()
	}
}

// closeAll closes every idle connection and keeps no more.
func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	var all []*idleSession
	for _, list := range p.idle {
		all = append(all, list...)
	}
	clear(p.idle)
	p.mu.Unlock()
	for _, e := range all {
		e.timer.Stop()
		e.s.quit()
	}
}

// idleCount is the number of idle connections, for tests.
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, list := range p.idle {
		n += len(list)
	}
	return n
}

// remove deletes the i'th idle connection of host; p.mu must be held.
func (p *pool) remove(host string, i int) {
	list := slices.Delete(p.idle[host], i, i+1)
	if len(list) == 0 {
		delete(p.idle, host)
		return
	}
	p.idle[host] = list
}
