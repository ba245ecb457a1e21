package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// quitTimeout bounds the courtesy QUIT sent before closing an idle
// connection; nobody waits for its reply.
const quitTimeout = time.Second

// session is one SMTP connection to a destination, greeted and ready for
// MAIL FROM.
type session struct {
	host   string         // MX host name, no trailing dot
	addr   netip.AddrPort // where we connected
	raw    net.Conn       // the TCP connection; closing it aborts anything in progress
	conn   net.Conn       // what client speaks over: raw, or TLS on top of it
	client *smtp.Client
	tls    bool
	// needHello is set after RSET: go-smtp then forgets the EHLO, and
	// sending it ourselves lets us see its error.
	needHello bool
}

// tlsHandshakeError marks a failed handshake after the destination agreed
// to STARTTLS: the connection is lost, but the host may work without TLS.
type tlsHandshakeError struct{ err error }

func (e *tlsHandshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *tlsHandshakeError) Unwrap() error { return e.err }

// dial connects to ip, reads the greeting, says EHLO and, if tryTLS and the
// destination offers it, starts TLS.
func (r *Relay) dial(ctx context.Context, host string, ip netip.Addr, tryTLS bool) (*session, error) {
	addr := netip.AddrPortFrom(ip, uint16(r.cfg.Port))
	d := net.Dialer{Timeout: r.cfg.ConnectTimeout}
	if src := r.sourceFor(ip); src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	s := &session{host: host, addr: addr, raw: raw, conn: raw}
	stop := context.AfterFunc(ctx, s.abort)
	err = s.greet(r)
	if err == nil && tryTLS {
		if offered, _ := s.client.Extension("STARTTLS"); offered {
			err = s.startTLS(r)
		}
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		s.abort()
		return nil, err
	}
	return s, nil
}

func (r *Relay) sourceFor(ip netip.Addr) netip.Addr {
	if ip.Is4() {
		return r.cfg.SourceIPv4
	}
	return r.cfg.SourceIPv6
}

func (r *Relay) newClient(conn net.Conn) *smtp.Client {
	c := smtp.NewClient(conn)
	c.CommandTimeout = r.cfg.CommandTimeout
	c.SubmissionTimeout = r.cfg.DataTimeout
	return c
}

// greet reads the greeting and says EHLO (go-smtp falls back to HELO).
func (s *session) greet(r *Relay) error {
	s.client = r.newClient(s.conn)
	return s.client.Hello(r.cfg.Helo)
}

// startTLS sends STARTTLS and, if the destination agrees, continues the
// session over TLS. A refusal leaves the session in plaintext.
//
// go-smtp v0.25 can only start TLS before its own EHLO (which would then
// say "localhost"), so the command and the handshake are done here and a
// new Client takes over the TLS connection.
func (s *session) startTLS(r *Relay) error {
	s.raw.SetDeadline(time.Now().Add(r.cfg.CommandTimeout))
	defer s.raw.SetDeadline(time.Time{})
	if _, err := io.WriteString(s.raw, "STARTTLS\r\n"); err != nil {
		return err
	}
	// The server sends nothing after this reply until our handshake
	// starts, so this reader cannot swallow TLS bytes.
	_, _, err := textproto.NewReader(bufio.NewReader(s.raw)).ReadResponse(220)
	if protoErr, ok := errors.AsType[*textproto.Error](err); ok {
		r.log.Info("relay: destination refused STARTTLS, continuing without TLS",
			"remote", s.remote(), "reply", fmt.Sprintf("%d %s", protoErr.Code, sanitize(protoErr.Msg)))
		return nil
	}
	if err != nil {
		return err
	}
	tc := tls.Client(s.raw, r.tlsConfig(s.host))
	if err := tc.Handshake(); err != nil {
		return &tlsHandshakeError{err}
	}
	s.conn = &greetedConn{Conn: tc, greeting: strings.NewReader("220 " + s.host + " TLS\r\n")}
	s.tls = true
	// RFC 3207 §4.2: forget what was learned before TLS and EHLO again.
	return s.greet(r)
}

func (r *Relay) tlsConfig(host string) *tls.Config {
	if r.cfg.TLSConfig == nil {
		// Opportunistic TLS (RFC 7435): an unauthenticated encrypted
		// channel still beats plaintext, and MX certificates are often
		// not valid for the MX name.
		return &tls.Config{ServerName: host, InsecureSkipVerify: true}
	}
	c := r.cfg.TLSConfig.Clone()
	if c.ServerName == "" {
		c.ServerName = host
	}
	return c
}

// greetedConn replays a 220 greeting before the connection's own bytes:
// a fresh go-smtp Client insists on reading one, but after STARTTLS the
// server sends none.
type greetedConn struct {
	net.Conn
	greeting *strings.Reader
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if g.greeting.Len() > 0 {
		return g.greeting.Read(p)
	}
	return g.Conn.Read(p)
}

// mail sends MAIL FROM, first checking that the destination supports the
// extensions the message needs.
func (s *session) mail(ctx context.Context, helo, from string, opts *smtp.MailOptions) error {
	stop := context.AfterFunc(ctx, s.abort)
	err := s.mailNow(helo, from, opts)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	return err
}

func (s *session) mailNow(helo, from string, opts *smtp.MailOptions) error {
	if s.needHello {
		if err := s.client.Hello(helo); err != nil {
			return err
		}
		s.needHello = false
	}
	if opts != nil && opts.UTF8 {
		if ok, _ := s.client.Extension("SMTPUTF8"); !ok {
			return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
				Message: fmt.Sprintf("%s does not support SMTPUTF8, and this message needs it", s.remote())}
		}
	}
	if opts != nil && opts.RequireTLS {
		if ok, _ := s.client.Extension("REQUIRETLS"); !ok {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 30},
				Message: fmt.Sprintf("%s does not support REQUIRETLS, and this message requires it", s.remote())}
		}
	}
	return s.client.Mail(from, opts)
}

// reset ends an unfinished transaction with RSET so the connection can be
// reused.
func (s *session) reset() error {
	if err := s.client.Reset(); err != nil {
		return err
	}
	s.needHello = true
	return nil
}

// quit closes the connection politely, without waiting for the reply.
func (s *session) quit() {
	s.conn.SetWriteDeadline(time.Now().Add(quitTimeout))
	io.WriteString(s.conn, "QUIT\r\n")
	s.conn.Close()
}

// abort closes the connection at once; whatever was in progress fails.
func (s *session) abort() { s.raw.Close() }

func (s *session) remote() string { return formatRemote(s.host, s.addr) }

// formatRemote names a destination the way Postfix logs it:
// mx.example.net[2001:db8::1]:25.
func formatRemote(host string, addr netip.AddrPort) string {
	return fmt.Sprintf("%s[%s]:%d", host, addr.Addr(), addr.Port())
}
