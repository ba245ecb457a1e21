package smtpd

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// readMessage reads the whole message: it is signed before it is sent,
// and the signature goes in front. go-smtp stops it at the size limit.
func readMessage(r io.Reader, sizeHint int64) ([]byte, error) {
	var b bytes.Buffer
	if sizeHint > 0 && sizeHint < 64<<20 {
		b.Grow(int(sizeHint) + 512)
	}
	if _, err := b.ReadFrom(r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// deliver runs the data stage, makes the message we forward, and relays
// it. A nil result means the message was accepted and dropped by policy
// (every recipient discarded); otherwise the result is the SMTP reply.
func (s *session) deliver(msg []byte) *smtp.SMTPError {
	msg = message.NormalizeLineEndings(msg)
	header, body := message.Split(msg)
	if hops := message.Count(header, "Received"); hops >= s.srv.cfg.MaxHops {
		s.closeRelay()
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6}, Message: fmt.Sprintf("Too many hops (%d Received fields): mail loop?", hops)}
	}
	req := s.request(abi.StageData, "")
	req.Size = uint64(len(msg))
	out := s.runRequest(req)
	switch out.Action {
	case abi.Reject, abi.Tempfail:
		s.closeRelay()
		return out.Reply
	case abi.Discard:
		s.closeRelay()
		s.txn.discarded = append(s.txn.discarded, s.txn.rcpts...)
		s.txn.forwards = nil
		return nil
	}
	s.txn.changes.merge(out)
	if len(s.txn.forwards) == 0 {
		return nil
	}

	var out2 bytes.Buffer
	out2.Grow(len(msg) + 2048)
	out2.Write(s.receivedField())
	for _, h := range s.txn.changes.add {
		out2.Write(message.FormatField(h.Name, h.Value))
	}
	if q := s.txn.changes.quarantine; q != "" {
		out2.Write(message.FormatField("X-Sluice-Quarantine", q))
	}
	out2.Write(message.Remove(header, s.txn.changes.remove))
	out2.WriteString("\r\n")
	out2.Write(body)
	fwd := out2.Bytes()

	if signer := s.srv.parts.Signer; signer != nil {
		sigs, err := signer.Sign(fwd)
		if err != nil {
			s.closeRelay()
			s.srv.log.Error("DKIM signing failed", "session", s.id, "err", err)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Signing failed, try again later"}
		}
		fwd = append(sigs, fwd...)
	}

	reply, err := s.txn.relay.Data(s.srv.ctx, fwd)
	s.txn.remote = s.txn.relay.Remote()
	s.closeRelay()
	if err != nil {
		return asSMTPError(err)
	}
	return reply
}

func (s *session) closeRelay() {
	if s.txn.relay != nil {
		s.txn.remote = s.txn.relay.Remote()
		s.txn.relay.Close()
		s.txn.relay = nil
	}
}

// receivedField is our trace field (RFC 5321 §4.4), with the protocol
// names of RFC 3848.
func (s *session) receivedField() []byte {
	proto := "ESMTP"
	if s.txn.utf8() {
		proto = "UTF8SMTP"
	}
	if _, ok := s.conn.TLSConnectionState(); ok {
		proto += "S"
	}
	v := fmt.Sprintf("from %s (%s) by %s (Sluice) with %s id %s", s.conn.Hostname(), addrLiteral(s.clientIP.String()), s.srv.cfg.Hostname, proto, s.id)
	if len(s.txn.rcpts) == 1 {
		v += fmt.Sprintf(" for <%s>", s.txn.rcpts[0])
	}
	v += "; " + time.Now().Format(time.RFC1123Z)
	return message.FormatField("Received", v)
}

func addrLiteral(ip string) string {
	if bytes.IndexByte([]byte(ip), ':') >= 0 {
		return "[IPv6:" + ip + "]"
	}
	return "[" + ip + "]"
}

func asSMTPError(err error) *smtp.SMTPError {
	if e, ok := err.(*smtp.SMTPError); ok {
		return e
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure: " + err.Error()}
}
