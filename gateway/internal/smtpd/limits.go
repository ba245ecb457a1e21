package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// limiter counts the connections of every listener of a server against
// the total and per-IP limits, so that a flood from one address cannot
// starve everyone else.
//
// A gateway that is full is under stress, as Postfix calls it: from the
// first connection refused for the total limit until the count falls to
// half of it, every session's reads must complete within stressTimeout
// (a command line, or what is left of a message), so that idle and slow
// clients holding every place are cut off in seconds rather than at
// command_timeout, and the others get in.
type limiter struct {
	hostname      string
	total         int
	perIP         int
	stressTimeout time.Duration // 0: no stress mode
	log           *slog.Logger

	stressed atomic.Bool

	mu     sync.Mutex
	conns  map[*limitedConn]struct{}
	byAddr map[netip.Addr]int
}

func newLimiter(hostname string, total, perIP int, stressTimeout time.Duration, log *slog.Logger) *limiter {
	return &limiter{hostname: hostname, total: total, perIP: perIP, stressTimeout: stressTimeout, log: log,
		conns: map[*limitedConn]struct{}{}, byAddr: map[netip.Addr]int{}}
}

// limitListener refuses connections over the limits before go-smtp sees
// them, answering 421 as RFC 5321 §3.8 allows.
type limitListener struct {
	net.Listener
	*limiter
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitedConn{Conn: c, limits: l.limiter, ip: remoteIP(c)}
		if reason := l.admit(lc); reason != "" {
			go refuse(c, fmt.Sprintf("421 4.7.0 %s %s, try again later\r\n", l.hostname, reason))
			continue
		}
		return lc, nil
	}
}

func (l *limiter) admit(c *limitedConn) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.total {
		l.startStress()
		return "too many connections"
	}
	if l.byAddr[c.ip] >= l.perIP {
		// One address at its limit is not stress: only its own
		// connections are refused.
		return "too many connections from " + c.ip.String()
	}
	l.conns[c] = struct{}{}
	l.byAddr[c.ip]++
	return ""
}

func (l *limiter) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
	if l.byAddr[c.ip]--; l.byAddr[c.ip] <= 0 {
		delete(l.byAddr, c.ip)
	}
	if l.stressed.Load() && len(l.conns) <= l.total/2 {
		l.stressed.Store(false)
		l.log.Info("connections back to half the limit: sessions get command_timeout again", "connections", len(l.conns))
	}
}

// startStress cuts every open session's read deadline to stressTimeout
// from now. l.mu is held.
func (l *limiter) startStress() {
	if l.stressTimeout <= 0 || l.stressed.Load() {
		return
	}
	l.stressed.Store(true)
	l.log.Warn("connection limit reached: every session now gets stress_timeout to send each command and the rest of a message",
		"connections", len(l.conns), "stress_timeout", l.stressTimeout)
	for c := range l.conns {
		c.applyReadDeadline()
	}
}

func refuse(c net.Conn, reply string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(reply))
	c.Close()
}

// limitedConn gives its place back exactly once, however often it is
// closed, makes a read timeout final, shortens its read deadline under
// stress, and says goodbye with 421.
type limitedConn struct {
	net.Conn
	limits   *limiter
	ip       netip.Addr
	once     sync.Once
	timedOut atomic.Bool

	mu           sync.Mutex
	readDeadline time.Time // as go-smtp or the session set it
}

// SetReadDeadline sets the deadline asked for, brought forward to
// stress_timeout from now while the gateway is under stress.
func (c *limitedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.applyReadDeadline()
}

func (c *limitedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *limitedConn) applyReadDeadline() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.readDeadline
	if c.limits.stressed.Load() {
		if cut := time.Now().Add(c.limits.stressTimeout); t.IsZero() || t.After(cut) {
			t = cut
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// Read fails at once after a read has timed out. go-smtp reads commands
// with bufio's ReadLine, which hands back the part of a line read before
// a timeout as if it were a whole line, and then reads on with a new
// deadline: a client trickling a byte at a time would never be cut off.
// With the timeout final, the next read ends the session with go-smtp's
// 421.
func (c *limitedConn) Read(p []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	n, err := c.Conn.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
	return n, err
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.limits.release(c) })
	return c.Conn.Close()
}

// goSMTPTooManyErrors starts the reply with which go-smtp (v0.25) closes
// a connection after its fourth protocol error (an unknown or mangled
// command).
var goSMTPTooManyErrors = []byte("500 5.5.1 Too many errors")

// Write sends 421 in place of go-smtp's farewell after too many protocol
// errors: RFC 5321 §3.8 has a server close only after a 421, and a
// client then knows that the connection, not its message, failed. It sees
// only plain text: inside TLS the farewell goes out as go-smtp wrote it.
func (c *limitedConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, goSMTPTooManyErrors) {
		_, err := c.Conn.Write(formatReply(tooManyErrors(c.limits.hostname)))
		return len(p), err
	}
	return c.Conn.Write(p)
}

// tooManyErrors is the reply that ends a session that made too many
// errors, as Postfix words it.
func tooManyErrors(hostname string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: hostname + " Error: too many errors, closing connection"}
}

// formatReply writes a one-line reply as go-smtp would.
func formatReply(e *smtp.SMTPError) []byte {
	return fmt.Appendf(nil, "%d %d.%d.%d %s\r\n", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
