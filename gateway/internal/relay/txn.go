package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// txnState says what a connection needs before it can be reused.
type txnState int

const (
	inMail   txnState = iota // MAIL FROM accepted: RSET before reuse
	finished                 // the destination answered the end of data: reusable as is
	broken                   // state unknown (lost, timed out, canceled): close
)

// Txn is one mail transaction on one destination connection, driven by the
// inbound session step by step.
type Txn struct {
	relay  *Relay
	s      *session // nil after Close
	state  txnState
	remote string
	tls    bool
}

// Rcpt sends RCPT TO. It returns nil on 2xx; anything else is an
// *smtp.SMTPError for the client.
func (t *Txn) Rcpt(ctx context.Context, to string) error {
	if err := t.usable(); err != nil {
		return err
	}
	if strings.ContainsAny(to, "\r\n") {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
			Message: "Recipient address contains a line break"}
	}
	err, aborted := t.guard(ctx, func() error { return t.s.client.Rcpt(to, nil) })
	if aborted && err == nil {
		err = ctx.Err()
	}
	if err == nil || isSuccess(err) {
		return nil
	}
	return t.fail("RCPT TO", err)
}

// Data sends the message. On success it returns the destination's reply
// (code 250, its enhanced code and text, e.g. "queued as X"); otherwise an
// *smtp.SMTPError for the client.
func (t *Txn) Data(ctx context.Context, msg []byte) (*smtp.SMTPError, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	var text string
	dataSent := false
	err, aborted := t.guard(ctx, func() error {
		w, err := t.s.client.Data()
		if err != nil {
			return err
		}
		dataSent = true
		t.s.conn.SetWriteDeadline(time.Now().Add(t.relay.cfg.DataTimeout))
		// The message goes straight to the connection in one write; go-smtp's
		// writer, empty at this point, only adds the end-of-data marker
		// (CRLF, dot, CRLF) and reads the reply.
		if _, err := t.s.conn.Write(wireData(msg)); err != nil {
			return err
		}
		resp, err := w.CloseWithResponse()
		if err != nil {
			return err
		}
		text = resp.StatusText
		return nil
	})
	reply, isReply := errors.AsType[*smtp.SMTPError](err)
	if err == nil || (isReply && reply.Code/100 == 2 && dataSent) {
		// Accepted is accepted, even if ctx ended just after: reporting a
		// failure now would make the client send the message twice. Only
		// a reply to the end of data accepts: a 2xx instead of 354 to the
		// DATA command is a broken destination that never got the message.
		if !aborted {
			t.state = finished
		}
		if isReply {
			return cleanReply(reply), nil
		}
		return parseReply(250, text), nil
	}
	if isReply && dataSent && !aborted {
		// The destination answered the end of data: the transaction is
		// over, whatever the answer.
		t.state = finished
	}
	return nil, t.fail("DATA", err)
}

// Close ends the transaction. A connection in a known state goes back to
// the idle pool (after RSET if the transaction was unfinished, which costs
// one round trip); any other is closed.
func (t *Txn) Close() {
	s := t.s
	if s == nil {
		return
	}
	t.s = nil
	switch t.state {
	case finished:
		t.relay.pool.put(s)
	case inMail:
		if err := s.reset(); err != nil {
			s.abort()
			return
		}
		t.relay.pool.put(s)
	default:
		s.abort()
	}
}

// Remote names the destination used: "mx.example.net[192.0.2.1]:25".
func (t *Txn) Remote() string { return t.remote }

// TLS reports whether the connection to the destination is encrypted.
func (t *Txn) TLS() bool { return t.tls }

func (t *Txn) usable() error {
	if t.s == nil || t.state == broken {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
			Message: fmt.Sprintf("%s: connection to the destination was lost", t.remote)}
	}
	return nil
}

// guard runs one exchange with the destination and aborts it if ctx ends.
// aborted reports that the connection was closed because of ctx.
func (t *Txn) guard(ctx context.Context, exchange func() error) (err error, aborted bool) {
	stop := context.AfterFunc(ctx, t.s.abort)
	err = exchange()
	if !stop() {
		t.state = broken
		return err, true
	}
	return err, false
}

// fail turns a failed exchange into the reply for the client, and marks
// the connection broken when its state is no longer known.
func (t *Txn) fail(stage string, err error) *smtp.SMTPError {
	reply, ok := errors.AsType[*smtp.SMTPError](err)
	switch {
	case ok && reply.Code == 421:
		// The destination is closing the connection. Our session with the
		// client stays open, so pass its words on as a plain 451.
		t.state = broken
		r := cleanReply(reply)
		r.Code = 451
		return r
	case ok && (reply.Code/100 == 4 || reply.Code/100 == 5):
		return cleanReply(reply)
	case ok:
		t.state = broken
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
			Message: fmt.Sprintf("%s: unexpected reply to %s: %s", t.remote, stage, describe(err))}
	default:
		t.state = broken
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
			Message: fmt.Sprintf("%s: connection lost during %s: %s", t.remote, stage, describe(err))}
	}
}

func isSuccess(err error) bool {
	reply, ok := errors.AsType[*smtp.SMTPError](err)
	return ok && reply.Code/100 == 2
}
