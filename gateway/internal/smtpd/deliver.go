package smtpd

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/auth"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
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
	header = auth.StripForged(header, s.srv.cfg.Hostname)
	if hops := message.Count(header, "Received"); hops >= s.srv.cfg.MaxHops {
		s.closeRelay()
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6}, Message: fmt.Sprintf("Too many hops (%d Received fields): mail loop?", hops)}
	}
	req := s.request(abi.StageData, "")
	req.Size = uint64(len(msg))
	var report *auth.Report
	if a := s.srv.parts.Auth; a != nil {
		r := a.Message(s.srv.ctx, join(header, body), s.txn.spf.Wait(s.srv.ctx))
		report, req.Auth = &r, r.Auth
	}
	out := s.runRequest(req, &plugin.Message{Header: header, Body: body})
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

	fwd, err := s.forwardedMessage(header, body, report)
	if err != nil {
		s.closeRelay()
		s.srv.log.Error("sealing or signing failed", "session", s.id, "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Signing failed, try again later"}
	}
	reply, err := s.txn.relay.Data(s.srv.ctx, fwd)
	s.txn.remote = s.txn.relay.Remote()
	s.closeRelay()
	if err != nil {
		return asSMTPError(err)
	}
	return reply
}

// forwardedMessage is the message as it leaves: our trace and result
// fields and the plugins' changes on top of the original, then DKIM
// signatures and an ARC set over all of it. Nothing else changes.
func (s *session) forwardedMessage(header, body []byte, report *auth.Report) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(header) + len(body) + 4096)
	// What plugins record under Authentication-Results joins our own field
	// rather than standing alone without an authserv-id.
	var recorded []string
	var added []abi.Header
	for _, h := range s.txn.changes.add {
		if strings.EqualFold(h.Name, "Authentication-Results") && report != nil {
			recorded = append(recorded, h.Value)
		} else {
			added = append(added, h)
		}
	}
	var results string
	if report != nil {
		results = report.Results(s.txn.from, s.conn.Hostname(), recorded...)
		b.Write(message.FormatField("Authentication-Results", s.srv.cfg.Hostname+"; "+results))
	}
	b.Write(s.receivedField())
	for _, h := range added {
		b.Write(message.FormatField(h.Name, h.Value))
	}
	if q := s.txn.changes.quarantine; q != "" {
		b.Write(message.FormatField("X-Sluice-Quarantine", q))
	}
	b.Write(message.Remove(header, s.txn.changes.remove))
	b.WriteString("\r\n")
	b.Write(body)
	fwd := b.Bytes()

	// DKIM first, then ARC (RFC 8617 §5.1): the seal then covers our own
	// signatures too.
	if signer := s.srv.parts.Signer; signer != nil {
		sigs, err := signer.Sign(fwd)
		if err != nil {
			return nil, fmt.Errorf("DKIM: %w", err)
		}
		fwd = append(sigs, fwd...)
	}
	if c := s.srv.parts.Seal; c != nil && report != nil {
		set, err := arc.Seal(fwd, s.srv.cfg.Hostname, results, report.ARC, *c)
		if err != nil {
			return nil, fmt.Errorf("ARC: %w", err)
		}
		fwd = append(set, fwd...)
	}
	return fwd, nil
}

// join puts a header block and body back together.
func join(header, body []byte) []byte {
	m := make([]byte, 0, len(header)+2+len(body))
	m = append(m, header...)
	m = append(m, "\r\n"...)
	return append(m, body...)
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
