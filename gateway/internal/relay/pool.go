package relay

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// pool keeps idle destination connections. Every connection in it is
// between transactions, with every reply to its commands read and nothing
// else from the destination: it goes in with nothing unread in its
// buffer, and comes out quiet (session.quiet), or is closed. Per MX host,
// max of them are kept for up to timeout; more than that are kept too, but each closes once it has been
// idle for surplusGrace: under load, a connection that finishes a
// transaction is wanted again a moment later by one of the sessions still
// coming, and closing it would cost that session a connect, greeting and
// EHLO; once the load is over, the surplus goes within a second.
type pool struct {
	max     int
	timeout time.Duration

	mu     sync.Mutex
	closed bool
	idle   map[string][]*idleSession // by MX host, oldest first
}

// surplusGrace is how long a connection beyond a host's max stays idle.
const surplusGrace = time.Second

type idleSession struct {
	s     *session
	since time.Time   // idle since
	timer *time.Timer // checks whether s has been idle too long
}

func newPool(max int, timeout time.Duration) *pool {
	return &pool{max: max, timeout: timeout, idle: make(map[string][]*idleSession)}
}

// get takes the most recently used quiet idle connection to (host, ip)
// that meets req, closing those the destination closed or sent something
// on while they sat idle, or returns nil. Connections that do not meet it
// stay for transactions that need less.
func (p *pool) get(host string, ip netip.Addr, req requirement) *session {
	for {
		s := p.take(host, ip, req)
		if s == nil || s.quiet() {
			return s
		}
		s.abort()
	}
}

// take removes the most recently used idle connection to (host, ip) that
// meets req from the pool and returns it, or nil.
func (p *pool) take(host string, ip netip.Addr, req requirement) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[host]
	for i := len(list) - 1; i >= 0; i-- {
		if e := list[i]; e.s.addr.Addr() == ip && e.s.meets(req) {
			p.remove(host, i)
			e.timer.Stop()
			return e.s
		}
	}
	return nil
}

// put keeps s for reuse, unless the destination sent more than the
// replies read (it is then in our read buffer): then it closes s. The
// socket is looked at when s is taken (get): later, so it sees more.
func (p *pool) put(s *session) {
	if s.c.r.Buffered() > 0 {
		s.abort()
		return
	}
	p.mu.Lock()
	if p.closed || p.max <= 0 {
		p.mu.Unlock()
		s.quit()
		return
	}
	e := &idleSession{s: s, since: time.Now()}
	e.timer = time.AfterFunc(min(surplusGrace, p.timeout), func() { p.expire(e) })
	p.idle[s.host] = append(p.idle[s.host], e)
	p.mu.Unlock()
}

// expire closes e, unless get took it first, if it has been idle for the
// timeout or is one more than the host's max; otherwise it looks again
// when the timeout is up.
func (p *pool) expire(e *idleSession) {
	p.mu.Lock()
	list := p.idle[e.s.host]
	i := slices.Index(list, e)
	idle := time.Since(e.since)
	if i >= 0 && idle < p.timeout && len(list) <= p.max {
		e.timer.Reset(p.timeout - idle)
		i = -1
	} else if i >= 0 {
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
