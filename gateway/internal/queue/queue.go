// Package queue keeps, durably, the mail that one SMTP session cannot
// settle: copies of a forwarded message for destinations not reached in
// session, DSNs, failure notices and reports. It retries each message
// with exponential backoff until its destination accepts or refuses it
// for good, or it expires, and tells a Notifier about what failed.
//
// This file is the package's contract (issue 12): the types every other
// part uses. The store and the scheduler are in the other files.
package queue

import (
	"context"
	"errors"
	"time"
)

// Kind says what a queued message is, which decides what its failure
// leads to.
type Kind string

const (
	// Forward is a forwarded message for destinations not reached in
	// session: a permanent failure or expiry sends a DSN to Sender.
	Forward Kind = "forward"
	// DSN is a delivery status notification we send (null sender): its
	// failure is logged, never notified.
	DSN Kind = "dsn"
	// Notice is a failure notice to an address's owner (null sender).
	Notice Kind = "notice"
	// Report is a DMARC aggregate or TLS report: its failure is logged.
	Report Kind = "report"
)

// Status is where one recipient of a queued message stands.
type Status string

const (
	Pending   Status = "pending"   // not delivered yet: retried
	Delivered Status = "delivered" // the destination said 2xx
	Failed    Status = "failed"    // refused for good (5xx) or expired; notified
	// Failing is refused for good or expired, the Notifier not told yet
	// (it failed): it is told again, then the recipient is Failed.
	Failing Status = "failing"
)

// Message is one queued message: one envelope, towards one destination
// domain, with the bytes that leave.
type Message struct {
	// ID names the message in the queue, the log, the CLI and the admin
	// API; Enqueue sets it.
	ID   string
	Kind Kind
	// From is the reverse-path towards the destination: SRS-rewritten
	// for forwarded mail, "" for the null reverse-path (DSNs, notices).
	From string
	// Sender is who a DSN about this message goes to: the sender as the
	// client gave it, before SRS. "" for none.
	Sender string
	// MayBounce says a DSN may go to Sender: false for the null sender
	// and for a sender that neither SPF nor DMARC (for a From domain of
	// the sender's organisation) authenticated (backscatter), and for
	// every Kind but Forward.
	MayBounce bool
	// UTF8 says the message needs SMTPUTF8 (an address or a header field
	// is not ASCII); RequireTLS that it carries REQUIRETLS (RFC 8689).
	UTF8       bool
	RequireTLS bool
	// TLSReport says the message is a TLS report (RFC 8460, Kind
	// Report): delivered despite the destination's TLS policies, and its
	// sessions left out of the next report (relay.ForTLSReport).
	TLSReport bool `json:",omitempty"`
	// Recipients are the message's destinations, all in one domain
	// (Domain), each with its own state.
	Recipients []Recipient
	// Arrived is when the client's transaction ended (Arrival-Date); the
	// message expires at Arrived + max_age.
	Arrived time.Time
	// ClientIP and Helo are the client the message came from, for the
	// DSN's Received-From-MTA; SessionID ties it to the session's log.
	ClientIP  string
	Helo      string
	SessionID string
	// Data is the whole message as it leaves, CRLF line endings, with
	// our trace fields and signatures on top.
	Data []byte

	// What the queue keeps about its attempts.
	Attempts    int       // deliveries tried so far
	NextAttempt time.Time // when the next one is due
	LastError   string    // the last attempt's reply or error, for list/show
	Held        bool      // hold: not retried until released
	Warned      bool      // the delay DSN went out
}

// Recipient is one destination of a queued message.
type Recipient struct {
	// Orig is the address the client gave (the DSN's
	// Original-Recipient, the address an owner's notice names); To is
	// where the message goes.
	Orig string
	To   string
	// Status and Reply are the last outcome: Reply is the destination's
	// reply ("550 5.1.1 <x@y>: no such user") or what failed on our side,
	// and Remote the host that gave it.
	Status Status
	Reply  string
	Remote string
}

// Domain is the destination domain of the message's recipients, in
// A-labels and lower case (domainOf).
func (m *Message) Domain() string {
	if len(m.Recipients) == 0 {
		return ""
	}
	return domainOf(m.Recipients[0].To)
}

// Enqueuer is what puts mail in the queue: the SMTP session (copies for
// further destinations), the DSN maker, the report senders.
type Enqueuer interface {
	// Enqueue stores m durably (on disk, synced) and sets m.ID; only
	// after it returns nil may the client be told 250. Recipients must
	// all be in one domain.
	Enqueue(ctx context.Context, m *Message) error
}

// Notifier is told what the queue could not deliver, so that the
// sender (a DSN) or the address's owner (a notice) hears of it. It is
// told of each recipient once: a recipient is marked Failed, and a
// message Warned, only after the Notifier returned nil.
type Notifier interface {
	// Failed is told the recipients of m refused for good (a 5xx reply)
	// or expired; their Reply says why.
	Failed(ctx context.Context, m *Message, rcpts []Recipient) error
	// Delayed is told once per message, when it has been queued for
	// delay_warning, the recipients still pending.
	Delayed(ctx context.Context, m *Message, rcpts []Recipient) error
}

// ErrNotFound is returned for an ID the queue does not hold.
var ErrNotFound = errors.New("no such message in the queue")

// Summary is one message as `sluice queue list` shows it.
type Summary struct {
	ID          string    `json:"id"`
	Kind        Kind      `json:"kind"`
	From        string    `json:"from"`
	Sender      string    `json:"sender"`
	Domain      string    `json:"domain"`
	Recipients  []string  `json:"recipients"` // pending ones
	Size        int       `json:"size"`
	Arrived     time.Time `json:"arrived"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error"`
	Held        bool      `json:"held"`
}
