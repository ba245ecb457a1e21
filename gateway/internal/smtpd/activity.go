package smtpd

import (
	"io"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// record hands the transaction's record to the console's store, if there
// is one. The store takes it without waiting (activity.Recorder).
func (s *session) record() {
	a := s.srv.cfg.Activity
	if a == nil {
		return
	}
	s.txns++
	a.Record(s.activityRecord())
}

// activityRecord is the transaction as the console shows it, from what
// the transaction's log line is made of.
func (s *session) activityRecord() activity.Record {
	t := &s.txn
	now := time.Now()
	_, tls := s.conn.TLSConnectionState()
	r := activity.Record{
		ID:         s.id + "-" + strconv.Itoa(s.txns),
		Node:       s.srv.cfg.Node,
		User:       s.user, // "" at the MX, where no one logs in
		Time:       now,
		Duration:   now.Sub(t.started),
		SessionID:  s.id,
		ClientIP:   s.clientIP.String(),
		ClientName: s.name.known(),
		Helo:       s.conn.Hostname(),
		TLS:        tls,
		From:       t.from,
		Outcome:    recordOutcome(t.outcome()),
		Relay:      t.remote,
		QueueIDs:   t.queueIDs,
		Size:       t.size,
		MessageID:  t.messageID,
		Subject:    t.subject,
	}
	if t.result != nil {
		r.DecidedBy, r.Reply = t.resultBy.String(), replyText(t.result)
	}
	accepted := false
	for _, d := range t.decisions {
		rc := s.recipientRecord(d)
		accepted = accepted || d.reply == nil
		r.Recipients = append(r.Recipients, rc)
	}
	if t.result == nil && len(t.decisions) > 0 && !accepted {
		// Every recipient was refused and the client gave up: the
		// transaction was refused, as its first recipient was.
		first := r.Recipients[0]
		r.Outcome, r.DecidedBy, r.Reply = first.Outcome, first.DecidedBy, first.Reply
	}
	if a := t.auth; a != nil {
		r.SPF, r.DMARC = a.SPF.Result, a.DMARC.Result
		var dk []string
		for _, d := range a.DKIM {
			dk = append(dk, d.Result+" ("+d.Domain+")")
		}
		r.DKIM = strings.Join(dk, ", ")
	}
	sc := t.score()
	r.Score = sc.total
	for _, f := range sc.symbols {
		r.Symbols = append(r.Symbols, f.Symbol+"="+formatScore(f.Score))
	}
	for _, v := range t.verdicts {
		r.Plugins = append(r.Plugins, activity.Verdict{Plugin: v.Name, Stage: v.stage.String(),
			Action: v.Action.String(), Failed: v.Err != nil, Duration: v.Duration})
	}
	return r
}

// recipientRecord is what became of one recipient: refused at RCPT,
// dropped by a plugin, or whatever became of the message.
func (s *session) recipientRecord(d decision) activity.Recipient {
	t := &s.txn
	rc := activity.Recipient{Address: d.rcpt}
	switch {
	case d.reply != nil:
		rc.Outcome, rc.DecidedBy, rc.Reply = recordOutcome(replyOutcome(d.reply)), d.by.String(), replyText(d.reply)
		return rc
	case d.by.kind == deciderPlugin:
		rc.Outcome, rc.DecidedBy = outcomeDropped, d.by.String()
		return rc
	}
	forwarded, queued := 0, 0
	for _, f := range t.forwards {
		if f.rcpt == d.rcpt {
			rc.Destinations = append(rc.Destinations, f.dest)
			forwarded++
		}
	}
	for _, f := range t.queued {
		if f.rcpt == d.rcpt {
			rc.Destinations = append(rc.Destinations, f.dest)
			queued++
		}
	}
	switch {
	case t.result == nil:
		rc.Outcome = outcomeNone
	case t.dropped:
		rc.Outcome, rc.DecidedBy = outcomeDropped, t.resultBy.String()
	case t.result.Code/100 != 2:
		rc.Outcome, rc.DecidedBy, rc.Reply = recordOutcome(replyOutcome(t.result)), t.resultBy.String(), replyText(t.result)
	case forwarded == 0 && queued > 0:
		rc.Outcome, rc.DecidedBy = outcomeQueued, deciderQueue
	default:
		rc.Outcome, rc.DecidedBy = outcomeForwarded, deciderDestination
	}
	return rc
}

// recordOutcome is an outcome in the console's words: what the log and
// metrics call rejected, it calls refused.
func recordOutcome(o string) string {
	if o == outcomeRejected {
		return "refused"
	}
	return o
}

// readHeader keeps the Message-ID and, if it is to be recorded, the
// Subject of the message for its record.
func (t *transaction) readHeader(header *message.Header, subject bool) {
	// The first of each that is not empty.
	for _, f := range header.All("Message-ID") {
		if t.messageID != "" {
			break
		}
		t.messageID = clip(f.Value())
	}
	if !subject {
		return
	}
	for _, f := range header.All("Subject") {
		if t.subject != "" {
			break
		}
		v := f.Value()
		if d, err := subjectDecoder.DecodeHeader(v); err == nil {
			v = d
		}
		t.subject = clip(v)
	}
}

// subjectDecoder decodes encoded words (RFC 2047); one in a charset Go
// does not know stays as it came.
var subjectDecoder = &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}

// clip bounds what a record keeps of a header field.
func clip(s string) string {
	const max = 998 // a line's length (RFC 5322 §2.1.1)
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "")
	}
	return s
}

// auth keeps the authentication results for the record.
func (t *transaction) keepAuth(a abi.Auth) { t.auth = &a }
