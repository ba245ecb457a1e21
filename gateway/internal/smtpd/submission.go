package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// The submission service (Config.Submission, RFC 6409) is the same
// session as the MX with a few turns, all here: a client logs in over
// TLS (RFC 4954) before MAIL, may send only as the addresses its user
// may (Logins.MaySend), in the envelope and in From, and its message
// leaves without SRS, signed with its From domain's keys.

// The SASL mechanisms offered, over TLS only.
var submissionMechanisms = []string{sasl.Plain, sasl.Login}

// AuthMechanisms is what EHLO offers after AUTH: nothing on the MX,
// nothing before TLS, so that no client sends a password in clear text.
func (s *session) AuthMechanisms() []string {
	if !s.srv.cfg.Submission || !s.tls() {
		return nil
	}
	return submissionMechanisms
}

// Auth starts a login. go-smtp passes our *smtp.SMTPError replies on.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.srv.cfg.Submission {
		return nil, smtp.ErrAuthUnknownMechanism // as go-smtp answers a session without AUTH
	}
	if !s.tls() {
		// go-smtp lets AUTH through in clear text (AllowInsecureAuth),
		// so that the refusal is RFC 4954's own.
		return nil, &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}
	}
	switch mech {
	case sasl.Plain:
		return malformedReply{sasl.NewPlainServer(func(identity, user, password string) error {
			if identity != "" && identity != user {
				// Acting as another user is not a thing here.
				return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid: the authorization identity must be the user's own"}
			}
			return s.login(user, password)
		})}, nil
	case sasl.Login:
		return malformedReply{&loginServer{authenticate: s.login}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// malformedReply gives a mechanism's own errors, a response it cannot
// parse (a PLAIN response without its two NULs), the reply of a syntax
// error: go-smtp would answer them 454 4.7.0, a failure of ours that
// the client retries with the same response for nothing. Our replies
// (535, 454) pass as they are.
type malformedReply struct{ sasl.Server }

func (m malformedReply) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := m.Server.Next(response)
	if err == nil {
		return challenge, done, nil
	}
	var reply *smtp.SMTPError
	if !errors.As(err, &reply) {
		reply = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Malformed authentication response"}
	}
	return challenge, done, reply // go-smtp passes an *smtp.SMTPError on only unwrapped
}

// login checks a user's password. A failure of the check itself is
// 454, which the client may retry.
func (s *session) login(user, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	logins := s.gen.Logins
	if logins == nil {
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	}
	if err := logins.Authenticate(s.srv.ctx, s.clientIP, user, password); err != nil {
		var reply *smtp.SMTPError
		if !errors.As(err, &reply) {
			s.srv.log.Error("login check failed", "session", s.id, "client", s.clientIP, "user", user, "err", err)
			reply = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
		}
		return reply
	}
	s.user = user // Logins logs the login
	return nil
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): go-sasl has its client only. It asks
// for the user name, then the password, each in its own challenge; a
// client may send the user name with AUTH LOGIN as its first response.
type loginServer struct {
	authenticate func(user, password string) error
	user         string
	step         int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if response == nil {
			return []byte("Username:"), false, nil
		}
		// An initial response is the user name.
		fallthrough
	case 1:
		l.user = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.authenticate(l.user, string(response))
	}
	return nil, false, errors.New("unexpected response")
}

// tls reports whether the connection is in TLS, started or implicit.
func (s *session) tls() bool {
	_, ok := s.conn.TLSConnectionState()
	return ok
}

// submissionMail decides MAIL on the submission service: TLS, a login,
// and a sender the user may send as. The null sender is refused too: a
// client submits messages, never bounces (RFC 6409 §6.1 lets us refuse
// what the user may not send).
func (s *session) submissionMail(from string) error {
	switch {
	case !s.tls():
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	case s.user == "":
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	if reply := s.maySend(from); reply != nil {
		return reply
	}
	return nil
}

// maySend is nil if the logged-in user may send as addr, and otherwise
// the refusal.
func (s *session) maySend(addr string) *smtp.SMTPError {
	if addr != "" && s.gen.Logins != nil && s.gen.Logins.MaySend(s.user, addr) {
		return nil
	}
	return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: fmt.Sprintf("<%s> may not send as <%s>", s.user, addr)}
}

// submittedFrom checks the From field of a submitted message: every
// address in it must be one the user may send as. It returns the domains
// of those addresses, whose own keys sign the message (DMARC aligns on
// the From domain).
func (s *session) submittedFrom(header *message.Header) ([]string, *smtp.SMTPError) {
	addrs, err := dmarc.FromAddresses(header)
	if err != nil {
		return nil, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: fmt.Sprintf("Message refused: %v; it needs a From field with the sender's address (RFC 5322 section 3.6)", err)}
	}
	var domains []string
	for _, a := range addrs {
		if reply := s.maySend(a); reply != nil {
			return nil, reply
		}
		if _, d, err := address.Split(a); err == nil && !slices.Contains(domains, d) {
			domains = append(domains, d)
		}
	}
	return domains, nil
}

// submissionFields are the fields a submission server adds to a
// message: RFC 6409 §8.1 and §8.3 let it add the Date and Message-ID a
// client left out, which a destination may otherwise count against it.
func (s *session) submissionFields(b *outgoing, header *message.Header) {
	if header.Count("Date") == 0 {
		b.write(message.FormatField("Date", time.Now().Format(time.RFC1123Z)))
	}
	if header.Count("Message-ID") == 0 {
		id := fmt.Sprintf("<%s.%s@%s>", s.id, newID(), s.srv.cfg.Hostname)
		b.write(message.FormatField("Message-ID", id))
		// The record names the message as its recipients will.
		s.txn.messageID = id
	}
}

// submissionRemoved are the fields a submitted message leaves without,
// as Postfix's cleanup removes them. Bcc and Resent-Bcc name recipients
// the others must not see (RFC 5322 §3.6.3): a client normally leaves
// them out, and one that does not would show every recipient the blind
// copies, since every copy here is the same message. Return-Path is the
// final delivery's to add: a message that starts its way here must not
// carry one (RFC 5321 §4.4).
var submissionRemoved = []string{"Bcc", "Resent-Bcc", "Return-Path"}

// submissionReceived is the trace field of submitted mail: RFC 3848's
// ESMTPSA (ESMTPA without TLS, which this service never takes), and RFC
// 8314 §4.3's tls clause naming the cipher suite. With HideClient the
// from clause is left out: it would show where the user sends from.
func (s *session) submissionReceived() []byte {
	proto := "ESMTPA"
	if s.txn.utf8() {
		proto = "UTF8SMTPA"
	}
	state, isTLS := s.conn.TLSConnectionState()
	if isTLS {
		proto = strings.TrimSuffix(proto, "A") + "SA"
	}
	var v strings.Builder
	if !s.srv.cfg.HideClient {
		client := addrLiteral(s.clientIP.String())
		if name, _ := s.name.wait(s.srv.ctx); name != "" {
			client = name + " " + client
		}
		fmt.Fprintf(&v, "from %s (%s) ", s.conn.Hostname(), client)
	}
	fmt.Fprintf(&v, "by %s (Sluice) with %s id %s", s.srv.cfg.Hostname, proto, s.id)
	if len(s.txn.rcpts) == 1 {
		if rcpt, ok := s.traceAddress(s.txn.rcpts[0]); ok {
			fmt.Fprintf(&v, " for <%s>", rcpt)
		}
	}
	if isTLS {
		fmt.Fprintf(&v, " tls %s", tls.CipherSuiteName(state.CipherSuite))
	}
	v.WriteString("; " + time.Now().Format(time.RFC1123Z))
	return message.FormatField("Received", v.String())
}

// submissionResults is the Authentication-Results of submitted mail
// (RFC 8601 §2.7.4): the user who logged in.
func (s *session) submissionResults(recorded []string) string {
	return strings.Join(append([]string{"auth=pass smtp.auth=" + pvalue(s.user)}, recorded...), "; ")
}

// pvalue is a user name as RFC 8601's pvalue: as it is when it is made of
// what a token or an address may hold, else a quoted-string (RFC 2045),
// without control characters, which a name in gateway.toml may have.
func pvalue(name string) string {
	plain := name != ""
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_+@", r)) {
			plain = false
			break
		}
	}
	if plain {
		return name
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range name {
		switch {
		case r < ' ' || r == 0x7f:
			continue
		case r == '"' || r == '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}
