package smtpd

import (
	"bytes"
	"errors"
	"fmt"
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
type limiter struct {
	hostname string
	total    int
	perIP    int

	mu     sync.Mutex
	open   int
	byAddr map[netip.Addr]int
}

func newLimiter(hostname string, total, perIP int) *limiter {
	return &limiter{hostname: hostname, total: total, perIP: perIP, byAddr: map[netip.Addr]int{}}
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
		ip := remoteIP(c)
		if reason := l.admit(ip); reason != "" {
			go refuse(c, fmt.Sprintf("421 4.7.0 %s %s, try again later\r\n", l.hostname, reason))
			continue
		}
		return &limitedConn{Conn: c, limits: l.limiter, ip: ip}, nil
	}
}

func (l *limiter) admit(ip netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.total {
		return "too many connections"
	}
	if l.byAddr[ip] >= l.perIP {
		return "too many connections from " + ip.String()
	}
	l.open++
	l.byAddr[ip]++
	return ""
}

func (l *limiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[ip]--; l.byAddr[ip] <= 0 {
		delete(l.byAddr, ip)
	}
}

func refuse(c net.Conn, reply string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(reply))
	c.Close()
}

// limitedConn gives its place back exactly once, however often it is
// closed, makes a read timeout final, and says goodbye with 421.
type limitedConn struct {
	net.Conn
	limits   *limiter
	ip       netip.Addr
	once     sync.Once
	timedOut atomic.Bool
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
	c.once.Do(func() { c.limits.release(c.ip) })
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
