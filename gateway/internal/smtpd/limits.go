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
	"github.com/prometheus/client_golang/prometheus"
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
//
// Every connection refused is counted by the limit it met; the log gets a
// sample (refusalLogEvery).
type limiter struct {
	hostname      string
	total         int
	perIP         int
	stressTimeout time.Duration // 0: no stress mode
	log           *slog.Logger
	refusals      *prometheus.CounterVec // by limit
	refusalLogs   map[string]*sampler    // by limit

	stressed atomic.Bool

	mu     sync.Mutex
	conns  map[*limitedConn]struct{}
	byAddr map[netip.Addr]int
}

// The limits a connection can meet, named after their settings: the
// reason sluice_connections_refused_total and the log give for a refusal.
const (
	limitTotal = "max_connections"
	limitPerIP = "max_connections_per_ip"
)

var connectionLimits = []string{limitTotal, limitPerIP}

// refusalLogEvery is how often, at most, a refused connection is logged
// for each limit: under a flood of connections the log must not be
// flooded too. The refusals in between are counted by the metric, and
// the next line says how many it did not log.
const refusalLogEvery = 10 * time.Second

func newLimiter(hostname string, total, perIP int, stressTimeout time.Duration, log *slog.Logger, refusals *prometheus.CounterVec) *limiter {
	l := &limiter{hostname: hostname, total: total, perIP: perIP, stressTimeout: stressTimeout, log: log,
		refusals: refusals, refusalLogs: map[string]*sampler{},
		conns: map[*limitedConn]struct{}{}, byAddr: map[netip.Addr]int{}}
	for _, limit := range connectionLimits {
		l.refusalLogs[limit] = &sampler{every: refusalLogEvery}
	}
	return l
}

// limitListener refuses connections over the limits before go-smtp sees
// them, answering 421 as RFC 5321 §3.8 allows.
type limitListener struct {
	net.Listener
	*limiter
	implicitTLS bool // the connections get TLS from their first byte (ServeTLS)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitedConn{Conn: c, limits: l.limiter, ip: remoteIP(c), implicitTLS: l.implicitTLS}
		if limit := l.admit(lc); limit != "" {
			reply := l.refusal(limit, lc.ip)
			l.refused(limit, lc.ip, reply)
			if l.implicitTLS {
				// A client that speaks TLS from its first byte cannot
				// read a reply in clear text: it is only closed.
				c.Close()
				continue
			}
			go refuse(c, formatReply(reply))
			continue
		}
		return lc, nil
	}
}

// admit takes a place for c, or names the limit that refuses it.
func (l *limiter) admit(c *limitedConn) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.total {
		l.startStress()
		return limitTotal
	}
	if l.byAddr[c.ip] >= l.perIP {
		// One address at its limit is not stress: only its own
		// connections are refused.
		return limitPerIP
	}
	l.conns[c] = struct{}{}
	l.byAddr[c.ip]++
	return ""
}

// refusal is the reply to a connection over a limit.
func (l *limiter) refusal(limit string, ip netip.Addr) *smtp.SMTPError {
	why := "too many connections"
	if limit == limitPerIP {
		why += " from " + ip.String()
	}
	return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: fmt.Sprintf("%s %s, try again later", l.hostname, why)}
}

// refused counts a refused connection, and logs it unless a refusal for
// the same limit was logged less than refusalLogEvery ago.
func (l *limiter) refused(limit string, ip netip.Addr, reply *smtp.SMTPError) {
	l.refusals.WithLabelValues(limit).Inc()
	if ok, held := l.refusalLogs[limit].allow(time.Now()); ok {
		l.log.Warn("connection refused", "reason", limit, "client", ip.String(), "reply", replyText(reply),
			"not_logged", held)
	}
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

func refuse(c net.Conn, reply []byte) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write(reply)
	c.Close()
}

// sampler lets one event through per interval and counts the others.
type sampler struct {
	every time.Duration

	mu   sync.Mutex
	next time.Time // when the next event may go through
	held int       // events held back since the last one let through
}

// allow reports whether an event at now goes through and, if it does,
// how many were held back since the last one that did.
func (s *sampler) allow(now time.Time) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.next) {
		s.held++
		return false, 0
	}
	held := s.held
	s.next, s.held = now.Add(s.every), 0
	return true, held
}

// limitedConn gives its place back exactly once, however often it is
// closed, makes a read timeout final, shortens its read deadline under
// stress, and says goodbye with 421.
type limitedConn struct {
	net.Conn
	limits *limiter
	ip     netip.Addr
	once   sync.Once
	// implicitTLS: TLS from the first byte, not after STARTTLS.
	implicitTLS bool
	timedOut    atomic.Bool

	mu           sync.Mutex
	readDeadline time.Time // as go-smtp or the session set it

	wmu sync.Mutex
	// held are the lines of a multi-line reply written so far, which go
	// out with its last line (see Write).
	held []byte
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

// goSMTPTooManyErrors is the reply with which go-smtp (v0.25) closes a
// connection after its fourth protocol error (an unknown or mangled
// command). The whole line: a destination's reply passed on to the sender
// may start the same way, or end a multi-line reply so.
var goSMTPTooManyErrors = []byte("500 5.5.1 Too many errors. Quiting now\r\n")

// Write sends 421 in place of go-smtp's farewell after too many protocol
// errors: RFC 5321 §3.8 has a server close only after a 421, and a
// client then knows that the connection, not its message, failed. It sees
// only plain text: inside TLS the farewell goes out as go-smtp wrote it.
// As go-smtp ends the connection without asking the session, the end is
// logged here.
//
// It also sends a multi-line reply in one write. go-smtp writes each line
// of a reply on its own (net/textproto flushes every line), so EHLO's
// reply of seven lines or more cost as many writes, each a syscall and a
// segment that wakes the client, who reads on until the last line
// anyway. A line that continues a reply ("250-PIPELINING") is held until
// the reply's last line, which go-smtp writes at once after it. Inside
// TLS, each write is a TLS record, whose first byte (its type) is no
// digit: never held.
func (c *limitedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// go-smtp's farewell is a reply of its own: a line that ends held
	// lines is the last of another reply.
	if len(c.held) == 0 && bytes.Equal(p, goSMTPTooManyErrors) {
		reply := tooManyErrors(c.limits.hostname)
		c.limits.log.Info("session ended: too many errors", "client", c.ip.String(), "reply", replyText(reply))
		_, err := c.Conn.Write(formatReply(reply))
		return len(p), err
	}
	if continuesReply(p) && len(c.held)+len(p) <= maxHeldReply {
		if c.held == nil {
			c.held = make([]byte, 0, 512) // EHLO's reply, in one allocation
		}
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	c.held = append(c.held, p...)
	_, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// maxHeldReply bounds the lines of one reply held for one write; a longer
// reply goes out in several.
const maxHeldReply = 4096

// continuesReply reports whether p is one reply line that is not its
// reply's last: three digits, a hyphen, text and CRLF (RFC 5321 §4.2.1).
func continuesReply(p []byte) bool {
	return len(p) >= 6 && isDigit(p[0]) && isDigit(p[1]) && isDigit(p[2]) && p[3] == '-' &&
		bytes.IndexByte(p, '\n') == len(p)-1 && p[len(p)-2] == '\r'
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

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
