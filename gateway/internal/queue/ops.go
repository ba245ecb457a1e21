package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/address"
)

// Options are the queue's settings ([queue] in gateway.toml). A zero
// MaxAge, MinBackoff, MaxBackoff, Concurrency or DomainConcurrency is
// [queue]'s default.
type Options struct {
	MaxAge       time.Duration // a message expires at Arrived + MaxAge
	DelayWarning time.Duration // Notifier.Delayed after this long; 0: never
	MinBackoff   time.Duration // the wait after the first failed attempt
	MaxBackoff   time.Duration // the longest wait between attempts
	// Concurrency is how many deliveries run at once, DomainConcurrency
	// how many of them to one destination domain.
	Concurrency       int
	DomainConcurrency int
	// Now is the clock; nil: time.Now. Tests set it.
	Now    func() time.Time
	Logger *slog.Logger // nil: discard
	// Metrics, from NewMetrics, count attempts and read the queue's
	// size; nil: none.
	Metrics *Metrics
}

// Queue is a queue directory, open and locked by this process.
type Queue struct {
	opts  Options
	store *store
	log   *slog.Logger
	wake  chan struct{} // tells Run that something became due

	mu      sync.Mutex
	entries map[string]*entry
	closed  bool
}

// entry is one message in memory: its state without Data (read from
// disk when delivered, so that large messages do not sit in memory).
type entry struct {
	// write serialises the writes of one message's state, so that an
	// older state never replaces a newer one on disk.
	write sync.Mutex
	// Under Queue.mu: m is replaced, never changed in place, so that a
	// reader holding it sees one consistent state.
	m    *Message
	size int
	busy bool      // a delivery runs
	gone bool      // deleted or done
	wait time.Time // not before this (a Notifier failed)
}

// Open opens the queue in dir, creating it, and locks it: a second
// process opening the same directory gets an error. What a crash left
// half written is removed; messages that were being delivered are tried
// again (at least once: the destination's reply may have been lost).
func Open(dir string, opts Options) (*Queue, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// The defaults are config's (setDefaults), for a queue opened
	// without a configuration, as tests do.
	if opts.MaxAge <= 0 {
		opts.MaxAge = 5 * 24 * time.Hour
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 5 * time.Minute
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(opts.MinBackoff, time.Hour)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 50
	}
	if opts.DomainConcurrency <= 0 {
		opts.DomainConcurrency = 10
	}
	st, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	msgs, err := st.load(opts.Logger)
	if err != nil {
		st.close()
		return nil, err
	}
	q := &Queue{
		opts:    opts,
		store:   st,
		log:     opts.Logger,
		wake:    make(chan struct{}, 1),
		entries: make(map[string]*entry, len(msgs)),
	}
	for _, m := range msgs {
		q.entries[m.ID] = &entry{m: m, size: st.size(m.ID)}
	}
	if opts.Metrics != nil {
		opts.Metrics.queue.Store(q)
	}
	return q, nil
}

// Close releases the directory. Run must have returned.
func (q *Queue) Close() error {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	if q.opts.Metrics != nil {
		q.opts.Metrics.queue.CompareAndSwap(q, nil)
	}
	return q.store.close()
}

var errClosed = errors.New("queue: closed")

// Enqueue stores m durably and sets m.ID, m.Arrived (if zero) and
// m.NextAttempt (now, if zero); the scheduler tries it at once.
func (q *Queue) Enqueue(ctx context.Context, m *Message) error {
	if err := check(m); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := q.opts.Now()
	m.ID = newID(now)
	if m.Arrived.IsZero() {
		m.Arrived = now
	}
	if m.NextAttempt.IsZero() {
		m.NextAttempt = now
	}
	for i := range m.Recipients {
		if m.Recipients[i].Status == "" {
			m.Recipients[i].Status = Pending
		}
	}
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return errClosed
	}
	if err := q.store.create(m); err != nil {
		return err
	}
	c := clone(m)
	c.Data = nil
	q.mu.Lock()
	q.entries[c.ID] = &entry{m: c, size: len(m.Data)}
	q.mu.Unlock()
	q.poke()
	return nil
}

// check refuses what the queue cannot deliver.
func check(m *Message) error {
	if len(m.Recipients) == 0 {
		return errors.New("queue: a message without recipients")
	}
	if len(m.Data) == 0 {
		return errors.New("queue: a message without data")
	}
	d := m.Domain()
	if d == "" {
		return fmt.Errorf("queue: recipient %q has no domain", m.Recipients[0].To)
	}
	for _, r := range m.Recipients[1:] {
		if rd := domainOf(r.To); !strings.EqualFold(rd, d) {
			return fmt.Errorf("queue: recipients in more than one domain (%s, %s): one message per destination domain", d, rd)
		}
	}
	return nil
}

// domainOf is addr's domain as the relay looks it up and Sluice compares
// domains: A-labels (an address may name its domain in U-labels,
// me@bücher.test), lower case; as it is if it is no domain.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	if d, err := address.Domain(addr[i+1:]); err == nil {
		return d
	}
	return addr[i+1:]
}

// List is every message, oldest first.
func (q *Queue) List(ctx context.Context) ([]Summary, error) {
	q.mu.Lock()
	out := make([]Summary, 0, len(q.entries))
	for _, e := range q.entries {
		s := e.m.Summary()
		s.Size = e.size
		out = append(out, s)
	}
	q.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Arrived.Equal(out[j].Arrived) {
			return out[i].Arrived.Before(out[j].Arrived)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Summary is m as `sluice queue list` shows it: Recipients are the
// pending ones, Size is len(m.Data) (the queue, which keeps no Data in
// memory, sets the size it knows).
func (m *Message) Summary() Summary {
	s := Summary{
		ID: m.ID, Kind: m.Kind, From: m.From, Sender: m.Sender, Domain: m.Domain(),
		Size: len(m.Data), Arrived: m.Arrived, Attempts: m.Attempts, NextAttempt: m.NextAttempt,
		LastError: m.LastError, Held: m.Held,
		Recipients: []string{}, // [] in JSON, not null, when none is pending
	}
	for _, r := range m.Recipients {
		if r.Status == Pending {
			s.Recipients = append(s.Recipients, r.To)
		}
	}
	return s
}

// Get is message id with its Data.
func (q *Queue) Get(ctx context.Context, id string) (*Message, error) {
	q.mu.Lock()
	e, ok := q.entries[id]
	var m *Message
	if ok {
		m = clone(e.m)
	}
	q.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	data, err := q.store.data(id)
	if err != nil {
		return nil, err
	}
	m.Data = data
	return m, nil
}

// Retry makes message id due now (and resets its backoff's wait, not
// its attempts).
func (q *Queue) Retry(ctx context.Context, id string) error {
	err := q.update(id, func(m *Message) { m.NextAttempt = q.opts.Now() })
	q.poke()
	return err
}

// Hold keeps message id from being tried (or expiring) until Release.
func (q *Queue) Hold(ctx context.Context, id string) error {
	return q.update(id, func(m *Message) { m.Held = true })
}

// Release undoes Hold; the message is due at once.
func (q *Queue) Release(ctx context.Context, id string) error {
	err := q.update(id, func(m *Message) {
		m.Held = false
		m.NextAttempt = q.opts.Now()
	})
	q.poke()
	return err
}

// Delete removes message id without delivering it or telling anyone. A
// delivery already under way finishes, but its outcome is not kept.
func (q *Queue) Delete(ctx context.Context, id string) error {
	q.mu.Lock()
	e, ok := q.entries[id]
	q.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	return q.remove(e)
}

// remove deletes e from disk and memory.
func (q *Queue) remove(e *entry) error {
	e.write.Lock()
	defer e.write.Unlock()
	q.mu.Lock()
	if e.gone {
		q.mu.Unlock()
		return ErrNotFound
	}
	id := e.m.ID
	q.mu.Unlock()
	if err := q.store.remove(id); err != nil {
		return err
	}
	q.mu.Lock()
	e.gone = true
	delete(q.entries, id)
	q.mu.Unlock()
	return nil
}

// update changes message id's state with f and stores it.
func (q *Queue) update(id string, f func(m *Message)) error {
	q.mu.Lock()
	e, ok := q.entries[id]
	q.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	_, err := q.change(e, func(m *Message) bool { f(m); return true })
	return err
}

// change applies f to a copy of e's state and, when f says it changed
// something, stores it durably before it becomes e's state. It returns
// the new state.
func (q *Queue) change(e *entry, f func(m *Message) bool) (*Message, error) {
	return q.changeKeep(e, f, false)
}

// record is change for the outcome of an attempt: if storing it fails
// (a full disk), e's state in memory is still the new one, and the
// error is returned with it. The destinations' replies are facts: while
// the process runs it must not send again what a destination accepted,
// and a crash before the state is stored only costs a duplicate, the
// at-least-once of any queue.
func (q *Queue) record(e *entry, f func(m *Message) bool) (*Message, error) {
	return q.changeKeep(e, f, true)
}

func (q *Queue) changeKeep(e *entry, f func(m *Message) bool, keep bool) (*Message, error) {
	e.write.Lock()
	defer e.write.Unlock()
	q.mu.Lock()
	if e.gone {
		q.mu.Unlock()
		return nil, ErrNotFound
	}
	m := clone(e.m)
	q.mu.Unlock()
	if !f(m) {
		return m, nil
	}
	err := q.store.put(m)
	if err != nil && !keep {
		return nil, err
	}
	q.mu.Lock()
	e.m = m
	q.mu.Unlock()
	return m, err
}

func clone(m *Message) *Message {
	c := *m
	c.Recipients = append([]Recipient(nil), m.Recipients...)
	return &c
}

// poke tells Run to look for due messages.
func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
