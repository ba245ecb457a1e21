// Package dsn tells senders what the queue could not deliver: delivery
// status notifications (RFC 3464) for a forwarded message refused for
// good, expired or long delayed, and, when asked, short failure notices
// to the address's owner. It is the queue's Notifier: what it makes, it
// signs and puts back in the queue, with the null reverse-path.
//
// It never writes to a null sender, nor to a sender that neither SPF nor
// DMARC authenticated (the message's MayBounce is false): a forged
// sender would get the bounce, which is backscatter. It never writes
// about a DSN, notice or report, and writes at most Limit messages an
// hour to one domain.
package dsn

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
)

// Config configures a Notifier.
type Config struct {
	// Hostname is the gateway's name: the Reporting-MTA, and the right
	// side of each Message-ID.
	Hostname string
	// Queue is where DSNs and notices go.
	Queue queue.Enqueuer
	// Signer returns the signer of the generation in use (each DSN is
	// signed with the keys of its time, a reload changes them); nil, or
	// a nil result: unsigned, From Domain.
	Signer func() *dkim.Signer
	// Domain is the domain of the From address when there is no signer
	// (dkim.domain); with one, its d= domain is, so that it aligns.
	Domain string
	// MaxAge is how long the queue keeps trying (queue.max_age): a delay
	// DSN says when it gives up.
	MaxAge time.Duration
	// Limit is how many DSNs and notices one recipient domain gets in an
	// hour (queue.dsn_limit); 0: no limit.
	Limit int
	// OwnerNotices sends each failed recipient's destination mailbox a
	// notice (queue.owner_notices).
	OwnerNotices bool
	// SRSDomain is the domain of our SRS addresses (srs.domain): a
	// recipient that was one is a bounce going back to the sender it was
	// for, whose mailbox is no owner's of ours.
	SRSDomain string
	Log       *slog.Logger
	// Count counts what became of each DSN or notice, by kind (failure,
	// delay, notice) and result (see the Result constants); nil: not
	// counted.
	Count func(kind, result string)
	Now   func() time.Time
}

// The kinds of what a Notifier writes, as counted.
const (
	KindFailure = "failure" // a DSN with Action: failed
	KindDelay   = "delay"   // a DSN with Action: delayed
	KindNotice  = "notice"  // a notice to the address's owner
)

// Results: what became of a DSN or notice, as counted.
const (
	Queued                = "queued"
	SuppressedNullSender  = "suppressed_null_sender" // the sender was <>
	SuppressedBackscatter = "suppressed_backscatter" // MayBounce false: neither SPF nor DMARC vouched for the sender
	SuppressedNotForward  = "suppressed_not_forward" // about a DSN, notice or report: logged only
	SuppressedRate        = "suppressed_rate"        // the recipient domain had Limit this hour
	Failed                = "failed"                 // making, signing or queueing it failed; the queue asks again
)

// Kinds and Results list every kind and result, for metrics that show
// each series from the start.
var (
	Kinds   = []string{KindFailure, KindDelay, KindNotice}
	Results = []string{Queued, SuppressedNullSender, SuppressedBackscatter, SuppressedNotForward, SuppressedRate, Failed}
)

// Notifier is the queue's Notifier. It is safe for concurrent use.
type Notifier struct {
	cfg   Config
	limit *limiter
}

var _ queue.Notifier = (*Notifier)(nil)

// New returns a Notifier for c.
func New(c Config) *Notifier {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Count == nil {
		c.Count = func(string, string) {}
	}
	return &Notifier{cfg: c, limit: newLimiter(c.Limit)}
}

// Failed sends the sender a failure DSN for rcpts and, with owner
// notices on, each recipient's mailbox a notice. An error means nothing
// was queued for the DSN, or a notice failed: the queue asks again.
func (n *Notifier) Failed(ctx context.Context, m *queue.Message, rcpts []queue.Recipient) error {
	if len(rcpts) == 0 {
		return nil
	}
	if err := n.report(ctx, KindFailure, m, rcpts); err != nil {
		return err
	}
	if !n.cfg.OwnerNotices || m.Kind != queue.Forward {
		return nil
	}
	for _, r := range rcpts {
		if err := n.notice(ctx, m, r); err != nil {
			return err
		}
	}
	return nil
}

// Delayed sends the sender a delay DSN for rcpts.
func (n *Notifier) Delayed(ctx context.Context, m *queue.Message, rcpts []queue.Recipient) error {
	if len(rcpts) == 0 {
		return nil
	}
	return n.report(ctx, KindDelay, m, rcpts)
}

// report sends a DSN of kind about rcpts to m's sender, unless it must
// not be sent.
func (n *Notifier) report(ctx context.Context, kind string, m *queue.Message, rcpts []queue.Recipient) error {
	log := n.cfg.Log.With("id", m.ID, "session", m.SessionID, "sender", m.Sender,
		"rcpts", strings.Join(recipients(rcpts), ","))
	if m.Kind != queue.Forward {
		// Our own mail failing (a DSN, a notice, a report): telling
		// anyone would loop or go nowhere. The kind logged is the
		// message's own, not the DSN's it would have caused.
		what := "not delivered"
		if kind == KindDelay {
			what = "delayed"
		}
		log.Warn("queued "+string(m.Kind)+" "+what+": logged only, never notified",
			"kind", string(m.Kind), "reply", rcpts[0].Reply)
		return n.suppressed(kind, SuppressedNotForward)
	}
	log = log.With("kind", kind)
	switch {
	case m.Sender == "":
		log.Info("no DSN: the sender is <>")
		return n.suppressed(kind, SuppressedNullSender)
	case !m.MayBounce:
		log.Info("no DSN: neither SPF nor DMARC authenticated the sender (backscatter)")
		return n.suppressed(kind, SuppressedBackscatter)
	case !n.limit.allow(domainOf(m.Sender), n.cfg.Now()):
		log.Warn("no DSN: queue.dsn_limit reached for the sender's domain this hour", "limit", n.cfg.Limit)
		return n.suppressed(kind, SuppressedRate)
	}
	action := "failed"
	if kind == KindDelay {
		action = "delayed"
	}
	return n.send(ctx, log, kind, queue.DSN, m, n.dsn(action, m, rcpts))
}

func (n *Notifier) suppressed(kind, result string) error {
	n.cfg.Count(kind, result)
	return nil
}

// notice sends r's destination mailbox a notice that m did not reach it.
// It goes whatever MayBounce says: it goes to our user, not to a sender
// who may be forged.
func (n *Notifier) notice(ctx context.Context, m *queue.Message, r queue.Recipient) error {
	log := n.cfg.Log.With("id", m.ID, "session", m.SessionID, "kind", KindNotice, "rcpt", r.To)
	if n.srsAddress(r.Orig) {
		// A bounce to our SRS address, forwarded to the sender it was
		// for: that sender is anyone's address (maybe forged), and a
		// notice about a bounce to it would be backscatter.
		log.Info("no owner notice: the recipient was an SRS address, a bounce to the original sender")
		return n.suppressed(KindNotice, SuppressedBackscatter)
	}
	if !n.limit.allow(domainOf(r.To), n.cfg.Now()) {
		log.Warn("no owner notice: queue.dsn_limit reached for the recipient's domain this hour", "limit", n.cfg.Limit)
		return n.suppressed(KindNotice, SuppressedRate)
	}
	return n.send(ctx, log, KindNotice, queue.Notice, m, n.ownerNotice(m, r))
}

// send queues msg (a qkind about m), logs whether it was queued, and
// counts it as kind.
func (n *Notifier) send(ctx context.Context, log *slog.Logger, kind string, qkind queue.Kind, m *queue.Message, msg *built) error {
	what := "DSN"
	if qkind == queue.Notice {
		what = "owner notice"
	}
	if err := n.enqueue(ctx, qkind, m, msg); err != nil {
		log.Error(what+" not queued", "err", err)
		n.cfg.Count(kind, Failed)
		return fmt.Errorf("dsn: %s not queued: %w", what, err)
	}
	log.Info(what+" queued", string(qkind), msg.id)
	n.cfg.Count(kind, Queued)
	return nil
}

// enqueue signs msg and queues it, with the null reverse-path, about m.
func (n *Notifier) enqueue(ctx context.Context, kind queue.Kind, m *queue.Message, msg *built) error {
	var data []byte
	if s := n.signer(); s != nil {
		sigs, err := s.SignParts(message.ParseHeader(msg.header), dkim.NewBody(msg.body))
		if err != nil {
			return fmt.Errorf("DKIM: %w", err)
		}
		data = sigs
	}
	data = append(data, msg.header...)
	data = append(data, "\r\n"...)
	data = append(data, msg.body...)
	q := &queue.Message{
		Kind:       kind,
		UTF8:       msg.utf8,
		RequireTLS: m.RequireTLS, // what the message asked for holds for what tells of it (RFC 8689 §5)
		Recipients: []queue.Recipient{{Orig: msg.to, To: msg.to, Status: queue.Pending}},
		Arrived:    n.cfg.Now(),
		SessionID:  m.SessionID,
		Data:       data,
	}
	if err := n.cfg.Queue.Enqueue(ctx, q); err != nil {
		return err
	}
	msg.id = q.ID
	return nil
}

func (n *Notifier) signer() *dkim.Signer {
	if n.cfg.Signer == nil {
		return nil
	}
	return n.cfg.Signer()
}

// fromDomain is the domain of our From address: the signer's, so that
// DKIM aligns with it for DMARC.
func (n *Notifier) fromDomain() string {
	if s := n.signer(); s != nil {
		return s.Domain()
	}
	return n.cfg.Domain
}

// srsAddress reports whether addr is one of our SRS addresses.
func (n *Notifier) srsAddress(addr string) bool {
	return n.cfg.SRSDomain != "" && srs.IsSRS(addr) && strings.EqualFold(domainOf(addr), n.cfg.SRSDomain)
}

func recipients(rcpts []queue.Recipient) []string {
	out := make([]string, len(rcpts))
	for i, r := range rcpts {
		out[i] = r.Orig
	}
	return out
}

// domainOf is the domain of an address, lower case, for the limiter.
func domainOf(addr string) string {
	return strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
}

// limiter counts what goes to each domain in windows of an hour, each
// starting at the first message after the last one ended. It lives in
// memory: a restart forgets the counts.
type limiter struct {
	limit int
	mu    sync.Mutex
	seen  map[string]*window
	swept time.Time
}

type window struct {
	start time.Time
	n     int
}

func newLimiter(limit int) *limiter {
	return &limiter{limit: limit, seen: map[string]*window{}}
}

// allow reports whether domain may get one more message now, and counts
// it if so.
func (l *limiter) allow(domain string, now time.Time) bool {
	if l.limit <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) >= time.Hour {
		// Forget the domains whose window ended, so that the map holds
		// at most an hour's worth of domains.
		for d, w := range l.seen {
			if now.Sub(w.start) >= time.Hour {
				delete(l.seen, d)
			}
		}
		l.swept = now
	}
	w := l.seen[domain]
	if w == nil || now.Sub(w.start) >= time.Hour {
		w = &window{start: now}
		l.seen[domain] = w
	}
	if w.n >= l.limit {
		return false
	}
	w.n++
	return true
}
