package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// txnState says what a connection needs before it can be reused.
type txnState int

const (
	inMail   txnState = iota // MAIL FROM accepted: RSET before reuse
	finished                 // the destination accepted the message (2xx): reusable as is
	broken                   // state unknown (lost, timed out, canceled, message refused): close
)

// Txn is one mail transaction on one destination connection, driven by the
// inbound session step by step.
type Txn struct {
	relay  *Relay
	s      *session // nil after Close
	state  txnState
	remote string
	// tlsVersion is the TLS version of the connection, 0 without TLS.
	tlsVersion uint16
}

// Rcpt sends RCPT TO for a recipient after the first (which Begin sends).
// It returns nil on 2xx; anything else is an *smtp.SMTPError for the
// client.
func (t *Txn) Rcpt(ctx context.Context, to string) error {
	if err := t.usable(); err != nil {
		return err
	}
	if err := checkRecipient(to); err != nil {
		return err
	}
	if !t.s.smtputf8 {
		if address.NeedsSMTPUTF8(to) {
			return t.s.addressNeedsSMTPUTF8()
		}
		var err error
		if to, err = asciiAddress(to); err != nil {
			return err
		}
	}
	defer t.relay.observe("rcpt", time.Now())
	err, aborted := t.guard(ctx, func() error {
		t.s.c.rcpt(to)
		_, err := t.s.c.roundTrip(2)
		return err
	})
	if aborted && err == nil {
		err = ctx.Err()
	}
	return t.rcptResult(err)
}

func checkRecipient(to string) error {
	if strings.ContainsAny(to, "\r\n") {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
			Message: "Recipient address contains a line break"}
	}
	return nil
}

// rcptResult turns the outcome of RCPT TO into what Rcpt returns.
func (t *Txn) rcptResult(err error) error {
	if err == nil {
		return nil
	}
	return t.fail("RCPT TO", err)
}

// Data sends the message, given whole or in parts sent one after the
// other (a header and a body, so that the caller need not join them; the
// header is in the first part). On success it returns the destination's
// reply (code 250, its enhanced code and text, e.g. "queued as X");
// otherwise an *smtp.SMTPError for the client.
//
// A message that may need SMTPUTF8, sent without it (see envelopeFor), is
// refused here without sending anything if its header does (RFC 6532);
// the transaction stays open, for Close to reset.
func (t *Txn) Data(ctx context.Context, msg ...[]byte) (*smtp.SMTPError, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if len(msg) > 0 && t.s.utf8Header {
		if header, _ := message.Split(msg[0]); message.HeaderNeedsSMTPUTF8(header) {
			return nil, t.s.headerNeedsSMTPUTF8()
		}
	}
	var code int
	var text string
	start := time.Now()
	err, aborted := t.guard(ctx, func() (err error) {
		code, text, err = t.s.c.data(wireParts(msg), t.relay.cfg.DataTimeout)
		return err
	})
	t.relay.observe("data", start)
	if err != nil {
		return nil, t.fail("DATA", err)
	}
	// The destination answered the end of data: the transaction is over,
	// whatever the answer. Accepted is accepted, even if ctx ended just
	// after: reporting a failure now would make the client send the
	// message twice.
	reply := parseReply(code, text)
	if code/100 == 2 {
		if !aborted {
			t.state = finished
		}
		return reply, nil
	}
	// A refusal may have come before the destination read the whole
	// message: go-smtp answers a line over its limit at once, then reads
	// the rest of the message as commands and answers those too. Replies
	// may still be on their way, so the connection is not reused.
	t.state = broken
	return nil, t.fail("DATA", reply)
}

// Close ends the transaction. A connection in a known state goes back to
// the idle pool; one whose transaction is still open gets RSET before its
// next use. Any other is closed.
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
		s.resetPending = true
		t.relay.pool.put(s)
	default:
		s.abort()
	}
}

// Remote names the destination used: "mx.example.net[192.0.2.1]:25".
func (t *Txn) Remote() string { return t.remote }

// SMTPUTF8 reports whether the transaction said SMTPUTF8: only then may
// the message carry UTF-8 in its header.
func (t *Txn) SMTPUTF8() bool { return t.s != nil && t.s.smtputf8 }

// TLS reports whether the connection to the destination is encrypted.
func (t *Txn) TLS() bool { return t.tlsVersion != 0 }

// TLSVersion is the TLS version of the connection to the destination
// (tls.VersionTLS13 and so on), 0 without TLS.
func (t *Txn) TLSVersion() uint16 { return t.tlsVersion }

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
