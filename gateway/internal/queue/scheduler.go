package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"
)

// Deliverer sends a queued message to its destination.
type Deliverer interface {
	// Deliver tries m (with its Data) for rcpts, all pending, and
	// returns one Result per recipient, in order.
	Deliver(ctx context.Context, m *Message, rcpts []Recipient) []Result
}

// Result is what became of one recipient in an attempt.
type Result struct {
	// Code is the destination's reply code: 2xx delivered, 5xx refused
	// for good, anything else (4xx, or 0 for no reply: the network, or
	// a failure of ours) tried again later.
	Code int
	// Reply is the reply as the destination gave it ("250 2.0.0 ok",
	// "550 5.1.1 no such user") or the error.
	Reply  string
	Remote string // the host that answered, if any
}

// Attempt outcomes, as the log and the metrics name them.
const (
	outDelivered = "delivered"
	outDeferred  = "deferred"
	outFailed    = "failed"
	outExpired   = "expired"
)

// Run delivers due messages until ctx ends, then waits for the
// deliveries under way (their context is ctx: they end early) and
// returns. It tells n of what fails. Only one Run per Queue.
func (q *Queue) Run(ctx context.Context, d Deliverer, n Notifier) {
	var wg sync.WaitGroup
	defer wg.Wait()
	busy := map[string]int{} // deliveries running per domain; under q.mu
	running := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := q.start(ctx, &wg, busy, &running, d, n)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(q.opts.Now()), 0)
		}
		timer.Reset(min(wait, time.Hour))
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// start starts a delivery for each due message the limits allow and
// returns when the next message not started is due (zero: none).
func (q *Queue) start(ctx context.Context, wg *sync.WaitGroup, busy map[string]int, running *int, d Deliverer, n Notifier) time.Time {
	now := q.opts.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	type due struct {
		e  *entry
		at time.Time
	}
	var dues []due
	var next time.Time
	for _, e := range q.entries {
		if e.busy || e.m.Held {
			continue
		}
		at := q.dueAt(e, now)
		if at.After(now) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		dues = append(dues, due{e, at})
	}
	sort.Slice(dues, func(i, j int) bool { return dues[i].at.Before(dues[j].at) })
	for _, du := range dues {
		domain := strings.ToLower(du.e.m.Domain())
		if *running >= q.opts.Concurrency {
			break
		}
		if busy[domain] >= q.opts.DomainConcurrency {
			continue // when one of the domain's ends, it wakes Run
		}
		du.e.busy = true
		busy[domain]++
		*running++
		wg.Add(1)
		go func(e *entry) {
			defer wg.Done()
			q.work(ctx, e, d, n)
			q.mu.Lock()
			e.busy = false
			busy[domain]--
			*running--
			q.mu.Unlock()
			q.poke()
		}(du.e)
	}
	return next
}

// dueAt is when e next needs work: an attempt, its expiry, its delay
// warning, or telling the Notifier of recipients already failed. Under
// q.mu.
func (q *Queue) dueAt(e *entry, now time.Time) time.Time {
	m := e.m
	at := m.NextAttempt
	if exp := m.Arrived.Add(q.opts.MaxAge); exp.Before(at) {
		at = exp
	}
	if q.opts.DelayWarning > 0 && !m.Warned {
		if w := m.Arrived.Add(q.opts.DelayWarning); w.Before(at) {
			at = w
		}
	}
	for _, r := range m.Recipients {
		if r.Status == Failing && now.Before(at) {
			at = now
		}
	}
	if e.wait.After(at) {
		at = e.wait
	}
	return at
}

// work does what is due for e: expiry or an attempt, then telling the
// Notifier, then the delay warning; it removes a message with nothing
// pending. Every change is stored before the next step.
func (q *Queue) work(ctx context.Context, e *entry, d Deliverer, n Notifier) {
	now := q.opts.Now()
	q.mu.Lock()
	m := e.m
	q.mu.Unlock()
	id := m.ID
	var err error
	switch {
	case !now.Before(m.Arrived.Add(q.opts.MaxAge)):
		m, err = q.expire(e, now)
	case !now.Before(m.NextAttempt) && hasStatus(m, Pending):
		m, err = q.attempt(ctx, e, m, d, now)
	}
	if errors.Is(err, ErrNotFound) {
		return // deleted meanwhile
	}
	if err != nil {
		// m is nil when the expiry could not be stored.
		q.log.Error("queue: storing a message's state failed", "id", id, "error", err.Error())
		q.pause(e, now)
		if m == nil || hasStatus(m, Pending) || hasStatus(m, Failing) {
			return
		}
		// Delivered, though not written down: removing the message
		// needs no space, and frees some.
	}
	if m, err = q.notifyFailed(ctx, e, m, n, now); err != nil {
		return
	}
	if m, err = q.warn(ctx, e, m, n, now); err != nil {
		return
	}
	if !hasStatus(m, Pending) && !hasStatus(m, Failing) {
		if err := q.remove(e); err != nil && err != ErrNotFound {
			q.log.Error("queue: removing a finished message failed", "id", m.ID, "error", err.Error())
			q.pause(e, now)
		}
	}
}

// attempt delivers m's pending recipients once and stores the outcome.
func (q *Queue) attempt(ctx context.Context, e *entry, m *Message, d Deliverer, now time.Time) (*Message, error) {
	rcpts := withStatus(m, Pending)
	data, err := q.store.data(m.ID)
	var results []Result
	if err == nil {
		full := clone(m)
		full.Data = data
		results = d.Deliver(ctx, full, rcpts)
	}
	if len(results) != len(rcpts) {
		if err == nil {
			err = fmt.Errorf("the deliverer gave %d results for %d recipients", len(results), len(rcpts))
		}
		results = make([]Result, len(rcpts))
		for i := range results {
			results[i] = Result{Reply: "451 4.3.0 queue: " + err.Error()}
		}
	}
	counts := map[string]int{}
	var delivered, deferred, failed []string
	lastError := ""
	// A delivery cut short by shutdown is not an attempt: what was
	// decided stays decided, the rest is tried at the next start.
	stopped := ctx.Err() != nil
	changed, err := q.record(e, func(m *Message) bool {
		if !stopped {
			m.Attempts++
		}
		i := 0
		for j := range m.Recipients {
			r := &m.Recipients[j]
			if i >= len(rcpts) || r.Status != Pending || r.To != rcpts[i].To {
				continue
			}
			res := results[i]
			i++
			r.Reply, r.Remote = res.Reply, res.Remote
			switch res.Code / 100 {
			case 2:
				r.Status = Delivered
				delivered = append(delivered, r.To)
			case 5:
				r.Status = Failing
				failed = append(failed, r.To)
				lastError = res.Reply
			default:
				if stopped {
					r.Reply, r.Remote = rcpts[i-1].Reply, rcpts[i-1].Remote
					continue
				}
				deferred = append(deferred, r.To)
				lastError = res.Reply
			}
		}
		if !stopped {
			m.LastError = lastError
			m.NextAttempt = now.Add(q.backoff(m.Attempts))
		}
		return true
	})
	if changed == nil {
		return m, err // deleted meanwhile
	}
	counts[outDelivered], counts[outDeferred], counts[outFailed] = len(delivered), len(deferred), len(failed)
	q.opts.Metrics.attempted(counts)
	attrs := []any{"id", m.ID, "kind", string(m.Kind), "domain", m.Domain(), "attempt", changed.Attempts}
	for _, o := range []struct {
		name  string
		rcpts []string
	}{{outDelivered, delivered}, {outDeferred, deferred}, {outFailed, failed}} {
		if len(o.rcpts) > 0 {
			attrs = append(attrs, o.name, strings.Join(o.rcpts, ","))
		}
	}
	if stopped {
		attrs = append(attrs, "stopped", "shutdown")
	}
	attrs = append(attrs, "reply", firstReply(results))
	if len(deferred) > 0 {
		attrs = append(attrs, "next_attempt", changed.NextAttempt.UTC().Format(time.RFC3339))
	}
	q.log.Info("queue attempt", attrs...)
	return changed, err
}

// firstReply is what the log line shows: the first reply that was not a
// success, or the first reply.
func firstReply(results []Result) string {
	for _, r := range results {
		if r.Code/100 != 2 {
			return r.Reply
		}
	}
	if len(results) > 0 {
		return results[0].Reply
	}
	return ""
}

// expire marks m's pending recipients as failing: m is past max_age.
func (q *Queue) expire(e *entry, now time.Time) (*Message, error) {
	var expired []string
	m, err := q.change(e, func(m *Message) bool {
		reply := fmt.Sprintf("expired: not delivered in %s", q.opts.MaxAge)
		if m.LastError != "" {
			reply += "; last error: " + m.LastError
		}
		for j := range m.Recipients {
			r := &m.Recipients[j]
			if r.Status == Pending {
				r.Status, r.Reply = Failing, reply
				expired = append(expired, r.To)
			}
		}
		return len(expired) > 0
	})
	if err == nil && len(expired) > 0 {
		q.opts.Metrics.attempted(map[string]int{outExpired: len(expired)})
		q.log.Info("queue expired", "id", m.ID, "kind", string(m.Kind), "domain", m.Domain(),
			"expired", strings.Join(expired, ","), "arrived", m.Arrived.UTC().Format(time.RFC3339), "reply", m.LastError)
	}
	return m, err
}

// notifyFailed tells n of m's failing recipients and, once it said
// nil, marks them failed.
func (q *Queue) notifyFailed(ctx context.Context, e *entry, m *Message, n Notifier, now time.Time) (*Message, error) {
	failing := withStatus(m, Failing)
	if len(failing) == 0 {
		return m, nil
	}
	tell := func(full *Message) error { return n.Failed(ctx, full, failing) }
	return q.notify(e, m, now, "failure", tell, func(m *Message) bool {
		for j := range m.Recipients {
			if m.Recipients[j].Status == Failing {
				m.Recipients[j].Status = Failed
			}
		}
		return true
	})
}

// notify calls tell with m and its Data and, once it said nil, stores
// what done changes. Either failing pauses e: the Notifier or the disk
// is tried again after min_backoff. what names the notice in the log.
func (q *Queue) notify(e *entry, m *Message, now time.Time, what string, tell func(*Message) error, done func(*Message) bool) (*Message, error) {
	full, err := q.withData(m)
	if err == nil {
		err = tell(full)
	}
	if err != nil {
		q.log.Warn("queue: notifying a "+what+" failed; tried again later", "id", m.ID, "error", err.Error())
		q.pause(e, now)
		return m, err
	}
	m, err = q.change(e, done)
	if err != nil {
		q.pause(e, now)
	}
	return m, err
}

// withData is a copy of m with its Data read from disk: the Notifier
// quotes the message's header, and the queue keeps only state in memory.
func (q *Queue) withData(m *Message) (*Message, error) {
	data, err := q.store.data(m.ID)
	if err != nil {
		return nil, fmt.Errorf("reading the message: %w", err)
	}
	full := clone(m)
	full.Data = data
	return full, nil
}

// warn tells n once that m is delayed, when it has been queued for
// delay_warning with recipients still pending.
func (q *Queue) warn(ctx context.Context, e *entry, m *Message, n Notifier, now time.Time) (*Message, error) {
	if q.opts.DelayWarning <= 0 || m.Warned || now.Sub(m.Arrived) < q.opts.DelayWarning {
		return m, nil
	}
	pending := withStatus(m, Pending)
	if len(pending) == 0 {
		return m, nil
	}
	tell := func(full *Message) error { return n.Delayed(ctx, full, pending) }
	return q.notify(e, m, now, "delay", tell, func(m *Message) bool { m.Warned = true; return true })
}

// pause keeps e from being worked on again before min_backoff: what
// failed (the Notifier, the disk) is tried again then, not in a loop.
func (q *Queue) pause(e *entry, now time.Time) {
	q.mu.Lock()
	e.wait = now.Add(q.opts.MinBackoff)
	q.mu.Unlock()
}

// withStatus is m's recipients in status s, in order.
func withStatus(m *Message, s Status) []Recipient {
	var out []Recipient
	for _, r := range m.Recipients {
		if r.Status == s {
			out = append(out, r)
		}
	}
	return out
}

func hasStatus(m *Message, s Status) bool {
	for _, r := range m.Recipients {
		if r.Status == s {
			return true
		}
	}
	return false
}

// backoff is the wait after attempt n (1 for the first):
// min_backoff·2^(n-1), capped at max_backoff, less up to a quarter at
// random, so that messages that failed together (a destination down)
// do not all come back at the same moment.
func (q *Queue) backoff(n int) time.Duration {
	d := q.opts.MaxBackoff
	if n < 1 {
		n = 1
	}
	if n <= 62 {
		if b := q.opts.MinBackoff << (n - 1); b > 0 && b < d && b>>(n-1) == q.opts.MinBackoff {
			d = b
		}
	}
	return d - time.Duration(rand.Int64N(int64(d)/4+1))
}
