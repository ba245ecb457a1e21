package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
)

// quitTimeout bounds the courtesy QUIT sent before closing an idle
// connection; nobody waits for its reply.
const quitTimeout = time.Second

// session is one SMTP connection to a destination, greeted and ready for
// MAIL FROM.
type session struct {
	host string         // MX host name, no trailing dot
	addr netip.AddrPort // where we connected
	// name is formatRemote(host, addr), made once for the connection
	// rather than for every transaction on it.
	name string
	helo string   // the EHLO name, that of the local address
	raw  net.Conn // the TCP connection; closing it aborts anything in progress
	c    *client
	// tlsVersion is the TLS version in use, 0 without TLS.
	tlsVersion uint16
	// verifyErr is what is wrong with the destination's certificate for
	// host by the WebPKI, nil if nothing (with TLS; see tlsConfig).
	verifyErr error
	// peerCerts is the chain the destination sent (with TLS), kept so that
	// an idle connection can be checked against a host's TLSA records.
	peerCerts []*x509.Certificate
	// daneMatched are the TLSA records peerCerts last matched: a reused
	// connection is checked against the host's records for every
	// transaction (twice: by the pool, then when it starts), and records
	// that have not changed need no second chain verification.
	daneMatched []tlsa
	// rejected is why the handshake was refused under a requirement.
	rejected *tlsPolicyError
	// tlsErr is why a handshake failed, on the plaintext connection
	// opened after it.
	tlsErr error
	// resetPending says the last transaction was left open: RSET goes
	// before the next MAIL FROM, in the same write when pipelining, rather
	// than costing a round trip when the transaction is dropped.
	resetPending bool
	// broken says the connection's state is unknown: it is closed, never
	// kept for reuse.
	broken bool
	// smtputf8 says the open transaction's MAIL FROM said SMTPUTF8; without
	// it, its addresses went with ASCII domains (see envelopeFor).
	// utf8Header says the message may have a UTF-8 header (RFC 6532) that
	// went without SMTPUTF8: Data checks it before anything is sent.
	smtputf8, utf8Header bool
	// reused says the connection came from the idle pool and its new
	// transaction has had no reply yet: a first reply that is no 2xx
	// might be a late one to an earlier command, so it is not believed
	// (see openNow).
	reused bool
}

// envelope is what Begin sends: MAIL FROM and the first RCPT TO.
type envelope struct {
	from string
	opts *smtp.MailOptions
	to   string
}

// tlsHandshakeError marks a failed handshake after the destination agreed
// to STARTTLS: the connection is lost, but the host may work without TLS.
type tlsHandshakeError struct{ err error }

func (e *tlsHandshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *tlsHandshakeError) Unwrap() error { return e.err }

// dial connects to ip, reads the greeting, says EHLO and, if tryTLS and the
// destination offers it, starts TLS. A connection that does not meet req
// is closed, with a *tlsPolicyError.
func (r *Relay) dial(ctx context.Context, host string, ip netip.Addr, req requirement, tryTLS bool) (*session, error) {
	start := time.Now()
	defer r.observe("connect", start)
	addr := netip.AddrPortFrom(ip, uint16(r.cfg.Port))
	d := net.Dialer{Timeout: r.cfg.ConnectTimeout}
	src := r.source(ip)
	if src.Addr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src.Addr, 0))
	}
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	s := &session{host: host, addr: addr, name: formatRemote(host, addr), helo: src.Helo, raw: raw, c: newClient(raw, r.cfg.CommandTimeout)}
	stop := context.AfterFunc(ctx, s.abort)
	err = s.c.greet()
	if err == nil {
		err = s.c.hello(s.helo)
	}
	if err == nil && tryTLS && s.c.has("STARTTLS") {
		err = s.startTLS(r, req)
	}
	if err == nil {
		if result, why := s.tlsResult(req, req.need); result != resultOK {
			err = &tlsPolicyError{result: result, err: why}
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

// startTLS continues the session over TLS, saying EHLO again. A refusal
// leaves the session in plaintext unless req needs TLS. A certificate
// that does not meet req fails the handshake with a *tlsPolicyError.
func (s *session) startTLS(r *Relay, req requirement) error {
	err := s.c.startTLS(r.tlsConfig(s, req))
	if refusal, ok := err.(*smtp.SMTPError); ok {
		if req.need > May {
			return &tlsPolicyError{result: resultNoSTARTTLS, err: fmt.Errorf("STARTTLS refused: %s", describe(refusal))}
		}
		r.log.Info("relay: destination refused STARTTLS, continuing without TLS",
			"remote", s.remote(), "reply", describe(refusal))
		return nil
	}
	if err != nil && s.rejected != nil {
		return s.rejected
	}
	if err != nil {
		return err
	}
	// c.conn is the handshaken *tls.Conn now.
	s.tlsVersion = s.c.conn.(*tls.Conn).ConnectionState().Version
	// RFC 3207 §4.2: forget what was learned before TLS and EHLO again.
	return s.c.hello(s.helo)
}

// open starts a transaction: MAIL FROM, then RCPT TO for the first
// recipient if MAIL FROM is accepted. rcptErr is only set when mailErr is
// nil. If ctx ends, the connection is closed and mailErr says so.
func (s *session) open(ctx context.Context, env envelope) (mailErr, rcptErr error) {
	stop := context.AfterFunc(ctx, s.abort)
	mailErr, rcptErr = s.openNow(env)
	if !stop() && mailErr == nil {
		mailErr = ctx.Err()
	}
	return mailErr, rcptErr
}

// openNow sends, after RSET if one is pending, MAIL FROM and RCPT TO. With
// PIPELINING (RFC 2920) they go in one write and their replies are read in
// order; without, one at a time, and RCPT TO only after MAIL FROM is
// accepted. A reply to RSET or to a pipelined RCPT TO that leaves the
// connection's state unknown marks it broken. On a reused connection,
// anything but 2xx to RSET and MAIL FROM is an error that is no reply, so
// the caller tries again on a fresh connection rather than pass it on.
func (s *session) openNow(env envelope) (mailErr, rcptErr error) {
	if err := s.checkExtensions(env.opts); err != nil {
		return err, nil
	}
	env, err := s.envelopeFor(env)
	if err != nil {
		return err, nil
	}
	pipelining := s.c.has("PIPELINING")
	if s.resetPending {
		s.c.command("RSET")
		if !pipelining {
			if err := s.readReset(s.c.flush()); err != nil {
				return err, nil
			}
		}
	}
	s.c.mail(env.from, env.opts)
	if pipelining {
		s.c.rcpt(env.to)
	}
	if err := s.c.flush(); err != nil {
		return err, nil
	}
	if s.resetPending {
		if err := s.readReset(nil); err != nil {
			return err, nil
		}
	}
	_, mailErr = s.c.expect(2)
	if mailErr != nil && s.reused {
		// This may be no answer to our MAIL FROM but a late reply to a
		// command of an earlier transaction, sent after the connection
		// was last found quiet. It is never passed on as the answer to
		// this sender: the caller retries on a fresh connection.
		s.broken = true
		return fmt.Errorf("first reply on a reused connection: %s", describe(mailErr)), nil
	}
	s.reused = false
	if !pipelining {
		if mailErr != nil {
			return mailErr, nil
		}
		s.c.rcpt(env.to)
		_, rcptErr = s.c.roundTrip(2)
		return nil, rcptErr
	}
	if !isReply(mailErr) {
		return mailErr, nil // the connection is lost; the RCPT reply with it
	}
	_, rcptErr = s.c.expect(2)
	if mailErr != nil && (rcptErr == nil || !isReply(rcptErr) || rcptErr.(*smtp.SMTPError).Code == 421) {
		// Without a transaction the server should have refused the
		// recipient; it did not, or said nothing we understand.
		s.broken = true
	}
	if mailErr != nil {
		return mailErr, nil
	}
	return nil, rcptErr
}

// readReset reads the reply to a pending RSET, once sending it returned
// err. Any failure means the connection cannot be used, and the error
// returned is not a reply, so that the destination's words about RSET are
// never taken for an answer to MAIL FROM.
func (s *session) readReset(err error) error {
	if err == nil {
		_, err = s.c.expect(2)
	}
	if err != nil {
		return fmt.Errorf("RSET: %s", describe(err))
	}
	s.resetPending = false
	return nil
}

// envelopeFor decides whether the transaction says SMTPUTF8 (RFC 6531),
// and returns the envelope to send: it does when the destination offers
// SMTPUTF8 and the message may need it (opts.UTF8: the client said
// SMTPUTF8, whose header is not known before DATA) or an address needs it
// (address.NeedsSMTPUTF8). Otherwise it goes without, the addresses' domains
// as A-labels; an address that needs SMTPUTF8 then is refused with 553
// 5.6.7, and a header that needs it at DATA (Txn.Data). Nothing is ever
// downgraded: see RATIONALE.md.
func (s *session) envelopeFor(env envelope) (envelope, error) {
	mayNeed := env.opts != nil && env.opts.UTF8
	needs := address.NeedsSMTPUTF8(env.from) || address.NeedsSMTPUTF8(env.to)
	s.smtputf8 = (mayNeed || needs) && s.c.has("SMTPUTF8")
	s.utf8Header = mayNeed && !s.smtputf8
	if s.smtputf8 != mayNeed {
		opts := smtp.MailOptions{}
		if env.opts != nil {
			opts = *env.opts
		}
		opts.UTF8 = s.smtputf8
		env.opts = &opts
	}
	if s.smtputf8 {
		return env, nil
	}
	if needs {
		return env, s.addressNeedsSMTPUTF8()
	}
	var err error
	if env.from, err = asciiAddress(env.from); err != nil {
		return env, err
	}
	env.to, err = asciiAddress(env.to)
	return env, err
}

// addressNeedsSMTPUTF8 refuses, at MAIL or RCPT, an address with a UTF-8
// local part towards a destination without SMTPUTF8 (553 5.6.7, RFC 6531).
func (s *session) addressNeedsSMTPUTF8() *smtp.SMTPError {
	return s.needsSMTPUTF8(553, smtp.EnhancedCode{5, 6, 7}, "an address")
}

// headerNeedsSMTPUTF8 refuses, at DATA, a UTF-8 header (RFC 6532) towards
// a destination without SMTPUTF8: X.6.9, a UTF-8 header message cannot be
// transferred (RFC 6531).
func (s *session) headerNeedsSMTPUTF8() *smtp.SMTPError {
	return s.needsSMTPUTF8(553, smtp.EnhancedCode{5, 6, 7}, "its header")
}

func (s *session) needsSMTPUTF8(code int, enh smtp.EnhancedCode, what string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh,
		Message: fmt.Sprintf("%s does not support SMTPUTF8, and this message needs it (%s is not ASCII)", s.remote(), what)}
}

// asciiAddress is an address for a transaction without SMTPUTF8: its
// domain as A-labels. A domain that has none is refused as a bad address.
func asciiAddress(addr string) (string, error) {
	a, err := address.WithASCIIDomain(addr)
	if err != nil {
		return "", &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
			Message: fmt.Sprintf("Bad address <%s>: %v", addr, err)}
	}
	return a, nil
}

// checkExtensions refuses, before anything is sent, a message that needs
// an extension the destination does not offer. SMTPUTF8 is envelopeFor's.
func (s *session) checkExtensions(opts *smtp.MailOptions) error {
	if opts != nil && opts.RequireTLS && !s.c.has("REQUIRETLS") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 30},
			Message: fmt.Sprintf("%s does not support REQUIRETLS, and this message requires it", s.remote())}
	}
	return nil
}

// isReply reports whether err is nil or a reply from the destination, as
// opposed to a lost connection or bytes that were no reply.
func isReply(err error) bool {
	_, ok := err.(*smtp.SMTPError)
	return err == nil || ok
}

// quiet reports whether nothing has come from the destination since the
// last reply we read: nothing left in our read buffer and, where the
// socket can be looked at, nothing waiting there and no close. Only a
// quiet connection is reused: bytes sent out of turn would be read as the
// answers to the next transaction's commands.
//
// Over TLS, bytes the TLS layer has read but not yet decrypted for us are
// not seen here; openNow's rule for reused connections covers them.
func (s *session) quiet() bool {
	return s.c.r.Buffered() == 0 && !sentSomething(s.raw)
}

// quit closes the connection politely, without waiting for the reply.
func (s *session) quit() {
	s.c.quit(quitTimeout)
	s.c.conn.Close()
}

// abort closes the connection at once; whatever was in progress fails.
func (s *session) abort() { s.raw.Close() }

func (s *session) remote() string { return s.name }

// formatRemote names a destination the way Postfix logs it:
// mx.example.net[2001:db8::1]:25.
func formatRemote(host string, addr netip.AddrPort) string {
	return fmt.Sprintf("%s[%s]:%d", host, addr.Addr(), addr.Port())
}
