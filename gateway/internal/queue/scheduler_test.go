package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
)

// destination is a real SMTP server on loopback that answers each
// recipient as told, counts the sessions that deliver at once per
// recipient domain, and can hold them in DATA.
type destination struct {
	addr string

	mu        sync.Mutex
	replies   map[string]*smtp.SMTPError // by recipient; nil: 250
	got       []string                   // recipients of the messages received
	inData    map[string]int             // sessions in DATA now, by domain
	maxData   map[string]int             // the most at once, by domain
	total     int                        // sessions in DATA now
	maxTotal  int
	gate      chan struct{} // if not nil, DATA waits for it to close
	dataCalls int
}

func startDestination(t *testing.T) *destination {
	t.Helper()
	d := &destination{replies: map[string]*smtp.SMTPError{}, inData: map[string]int{}, maxData: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = ln.Addr().String()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &destSession{d: d}, nil }))
	srv.Domain = "dest.test"
	srv.AllowInsecureAuth = true
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return d
}

func (d *destination) reply(rcpt string, e *smtp.SMTPError) {
	d.mu.Lock()
	d.replies[rcpt] = e
	d.mu.Unlock()
}

func (d *destination) received() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

type destSession struct {
	d     *destination
	rcpts []string
}

func (s *destSession) Reset()        { s.rcpts = nil }
func (s *destSession) Logout() error { return nil }
func (s *destSession) Mail(string, *smtp.MailOptions) error {
	return nil
}

func (s *destSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if e := s.d.replies[to]; e != nil {
		return e
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *destSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	dom := domainOf(s.rcpts[0])
	d := s.d
	d.mu.Lock()
	d.dataCalls++
	d.inData[dom]++
	d.total++
	d.maxData[dom] = max(d.maxData[dom], d.inData[dom])
	d.maxTotal = max(d.maxTotal, d.total)
	gate := d.gate
	d.mu.Unlock()
	if gate != nil {
		<-gate
	}
	d.mu.Lock()
	d.inData[dom]--
	d.total--
	d.got = append(d.got, s.rcpts...)
	d.mu.Unlock()
	return nil
}

// smtpDeliverer delivers with a go-smtp client to one address, whatever
// the domain: the scheduler's side of a real SMTP exchange.
type smtpDeliverer struct{ addr string }

func (sd smtpDeliverer) Deliver(ctx context.Context, m *Message, rcpts []Recipient) []Result {
	res := make([]Result, len(rcpts))
	fail := func(err error) []Result {
		for i := range res {
			if res[i].Code == 0 || res[i].Code/100 == 2 {
				res[i] = asResult(err)
			}
		}
		return res
	}
	c, err := smtp.Dial(sd.addr)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	defer context.AfterFunc(ctx, func() { c.Close() })()
	if err := c.Mail(m.From, nil); err != nil {
		return fail(err)
	}
	accepted := 0
	for i, r := range rcpts {
		if err := c.Rcpt(r.To, nil); err != nil {
			res[i] = asResult(err)
			continue
		}
		res[i] = Result{Code: 250}
		accepted++
	}
	if accepted == 0 {
		return res
	}
	w, err := c.Data()
	if err != nil {
		return fail(err)
	}
	w.Write(m.Data)
	if err := w.Close(); err != nil {
		return fail(err)
	}
	for i := range res {
		if res[i].Code == 250 {
			res[i].Reply = "250 2.0.0 ok"
		}
	}
	c.Quit()
	return res
}

func asResult(err error) Result {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return Result{Code: se.Code, Reply: fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)}
	}
	return Result{Reply: err.Error()}
}

// recorder is a Notifier that records what it is told and fails while
// fail is set.
type recorder struct {
	mu      sync.Mutex
	failed  [][]Recipient
	delayed [][]Recipient
	fail    error
	// dataless counts the calls given a message without its Data, which
	// a DSN quotes the header of.
	dataless int
}

func (r *recorder) Failed(ctx context.Context, m *Message, rcpts []Recipient) error {
	return r.record(&r.failed, m, rcpts)
}

func (r *recorder) Delayed(ctx context.Context, m *Message, rcpts []Recipient) error {
	return r.record(&r.delayed, m, rcpts)
}

// record adds a call about m's rcpts to calls.
func (r *recorder) record(calls *[][]Recipient, m *Message, rcpts []Recipient) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	*calls = append(*calls, rcpts)
	if len(m.Data) == 0 {
		r.dataless++
	}
	return r.fail
}

func (r *recorder) calls() (failed, delayed [][]Recipient) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]Recipient(nil), r.failed...), append([][]Recipient(nil), r.delayed...)
}

var testOptions = Options{MaxAge: 5 * 24 * time.Hour, DelayWarning: 4 * time.Hour,
	MinBackoff: 5 * time.Minute, MaxBackoff: time.Hour, Concurrency: 10, DomainConcurrency: 5}

// runTest opens a queue on a fake clock and runs it against d until the
// test ends.
func runTest(t *testing.T, opts Options, d *destination, n Notifier) (*Queue, *fakeclock.Clock) {
	t.Helper()
	c := fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	opts.Now = c.Now
	q := openTest(t, t.TempDir(), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx, smtpDeliverer{d.addr}, n); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if r, ok := n.(*recorder); ok && r.dataless > 0 {
			t.Errorf("the Notifier was told %d times of a message without its Data", r.dataless)
		}
	})
	return q, c
}

// eventually waits (up to 10 s) for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func empty(q *Queue) func() bool {
	return func() bool { l, _ := q.List(context.Background()); return len(l) == 0 }
}

// TestDeliveredAtOnce: Enqueue wakes the scheduler (the clock does not
// move), and a delivered message leaves the queue and the disk.
func TestDeliveredAtOnce(t *testing.T) {
	d := startDestination(t)
	q, _ := runTest(t, testOptions, d, &recorder{})
	if err := q.Enqueue(context.Background(), testMessage("a@example.net", "b@example.net")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the queue to empty", empty(q))
	if got := strings.Join(d.received(), " "); got != "a@example.net b@example.net" {
		t.Errorf("the destination received for %q", got)
	}
	entries, _ := readDirNames(q.store.dir)
	if len(entries) != 1 {
		t.Errorf("the queue directory still holds %v", entries)
	}
}

// TestTemporaryThenDelivered: a 4xx is retried after the backoff, then
// delivered; a recipient already delivered is not sent again.
func TestTemporaryThenDelivered(t *testing.T) {
	d := startDestination(t)
	d.reply("b@example.net", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"})
	q, c := runTest(t, testOptions, d, &recorder{})
	m := testMessage("a@example.net", "b@example.net")
	start := c.Now()
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	var got *Message
	eventually(t, "the first attempt", func() bool {
		got, _ = q.Get(context.Background(), m.ID)
		return got != nil && got.Attempts == 1
	})
	if wait := got.NextAttempt.Sub(start); wait < testOptions.MinBackoff*3/4 || wait > testOptions.MinBackoff {
		t.Errorf("next attempt in %s, want min_backoff less up to a quarter", wait)
	}
	if got.Recipients[0].Status != Delivered || got.Recipients[1].Status != Pending || !strings.Contains(got.LastError, "451 4.2.0") {
		t.Fatalf("after a 451: %+v", got)
	}
	d.reply("b@example.net", nil)
	c.Advance(testOptions.MinBackoff / 2)
	q.poke()
	if g, _ := q.Get(context.Background(), m.ID); g == nil || g.Attempts != 1 {
		t.Fatalf("tried again before its backoff: %+v", g)
	}
	c.Advance(testOptions.MinBackoff / 2)
	q.poke()
	eventually(t, "the queue to empty", empty(q))
	if got := strings.Join(d.received(), " "); got != "a@example.net b@example.net" {
		t.Errorf("the destination received for %q, want a once, then b", got)
	}
}

// TestPermanentFailure: a 5xx recipient goes to the Notifier, and is
// marked failed only once the Notifier said nil.
func TestPermanentFailure(t *testing.T) {
	d := startDestination(t)
	d.reply("b@example.net", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	n := &recorder{fail: errors.New("the DSN could not be queued")}
	q, c := runTest(t, testOptions, d, n)
	m := testMessage("a@example.net", "b@example.net")
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Notifier to be told", func() bool { f, _ := n.calls(); return len(f) == 1 })
	got, err := q.Get(context.Background(), m.ID)
	if err != nil || got.Recipients[1].Status != Failing {
		t.Fatalf("with the Notifier failing: %+v, %v; want b failing", got, err)
	}
	n.mu.Lock()
	n.fail = nil
	n.mu.Unlock()
	c.Advance(testOptions.MinBackoff)
	q.poke()
	eventually(t, "the queue to empty", empty(q))
	failed, delayed := n.calls()
	if len(failed) != 2 || len(failed[1]) != 1 || failed[1][0].To != "b@example.net" || !strings.Contains(failed[1][0].Reply, "550 5.1.1") {
		t.Errorf("Failed calls = %+v, want b twice, with the 550", failed)
	}
	if len(delayed) != 0 {
		t.Errorf("Delayed calls = %+v", delayed)
	}
	if got := strings.Join(d.received(), " "); got != "a@example.net" {
		t.Errorf("the destination received for %q", got)
	}
}

// TestDelayWarningAndExpiry: with the destination deferring, the
// Notifier hears once of the delay after delay_warning, then of the
// failure at max_age, with the last error.
func TestDelayWarningAndExpiry(t *testing.T) {
	d := startDestination(t)
	d.reply("a@example.net", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"})
	n := &recorder{}
	q, c := runTest(t, testOptions, d, n)
	m := testMessage("a@example.net")
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first attempt", func() bool { g, _ := q.Get(context.Background(), m.ID); return g != nil && g.Attempts == 1 })
	step := func(d time.Duration) {
		c.Advance(d)
		q.poke()
	}
	step(3 * time.Hour)
	eventually(t, "the second attempt", func() bool { g, _ := q.Get(context.Background(), m.ID); return g != nil && g.Attempts == 2 })
	if _, delayed := n.calls(); len(delayed) != 0 {
		t.Fatalf("warned after 3h: %+v", delayed)
	}
	step(time.Hour)
	eventually(t, "the delay warning", func() bool { _, dl := n.calls(); return len(dl) == 1 })
	eventually(t, "Warned to be stored", func() bool { g, _ := q.Get(context.Background(), m.ID); return g != nil && g.Warned })
	for range 3 {
		step(2 * time.Hour)
		a := 0
		eventually(t, "another attempt", func() bool {
			g, _ := q.Get(context.Background(), m.ID)
			ok := g != nil && g.Attempts > a
			if g != nil {
				a = g.Attempts
			}
			return ok
		})
	}
	if _, delayed := n.calls(); len(delayed) != 1 || delayed[0][0].To != "a@example.net" {
		t.Fatalf("Delayed calls = %+v, want one", delayed)
	}
	step(5 * 24 * time.Hour)
	eventually(t, "the queue to empty", empty(q))
	failed, _ := n.calls()
	if len(failed) != 1 || !strings.Contains(failed[0][0].Reply, "expired") || !strings.Contains(failed[0][0].Reply, "452 4.2.2") {
		t.Errorf("Failed calls = %+v, want a expired with the last error", failed)
	}
}

// TestConcurrencyLimits: at most domain_concurrency deliveries to one
// domain and concurrency in all.
func TestConcurrencyLimits(t *testing.T) {
	d := startDestination(t)
	gate := make(chan struct{})
	d.gate = gate
	opts := testOptions
	opts.Concurrency, opts.DomainConcurrency = 3, 2
	q, _ := runTest(t, opts, d, &recorder{})
	for _, to := range []string{"a@one.test", "b@one.test", "c@one.test", "d@one.test", "e@two.test", "f@two.test"} {
		if err := q.Enqueue(context.Background(), testMessage(to)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "three deliveries at once", func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.total == 3 })
	time.Sleep(100 * time.Millisecond) // room for a delivery over the limits to start
	close(gate)
	eventually(t, "the queue to empty", empty(q))
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.maxTotal != 3 || d.maxData["one.test"] != 2 || d.maxData["two.test"] > 2 || len(d.got) != 6 {
		t.Errorf("at most %d deliveries at once, %v by domain, %d delivered; want 3, at most 2 per domain, 6",
			d.maxTotal, d.maxData, len(d.got))
	}
}

// TestRunAfterReopen: a message queued (or being delivered) when the
// process stopped is delivered by the next one.
func TestRunAfterReopen(t *testing.T) {
	d := startDestination(t)
	dir := t.TempDir()
	q, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(context.Background(), testMessage("a@example.net")); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q = openTest(t, dir, testOptions)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx, smtpDeliverer{d.addr}, &recorder{}); close(done) }()
	defer func() { cancel(); <-done }()
	eventually(t, "the queue to empty", empty(q))
	if got := d.received(); len(got) != 1 {
		t.Errorf("the destination received %v", got)
	}
}

func TestBackoff(t *testing.T) {
	q := &Queue{opts: Options{MinBackoff: 5 * time.Minute, MaxBackoff: time.Hour}}
	for n, want := range map[int]time.Duration{0: 5 * time.Minute, 1: 5 * time.Minute, 2: 10 * time.Minute, 3: 20 * time.Minute,
		4: 40 * time.Minute, 5: time.Hour, 40: time.Hour, 64: time.Hour, 1 << 30: time.Hour} {
		lo, hi := want, time.Duration(0)
		for range 2000 {
			b := q.backoff(n)
			lo, hi = min(lo, b), max(hi, b)
		}
		if lo < want*3/4 || hi > want || hi-lo < want/8 {
			t.Errorf("backoff(%d) in [%s, %s], want within [%s, %s] and spread", n, lo, hi, want*3/4, want)
		}
	}
}

// TestShutdownMidDelivery: Run returns when its context ends, even with
// a delivery under way; that delivery does not count as an attempt, and
// the message stays queued, due at once.
func TestShutdownMidDelivery(t *testing.T) {
	d := startDestination(t)
	gate := make(chan struct{})
	defer close(gate)
	d.gate = gate
	c := fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	opts := testOptions
	opts.Now = c.Now
	q := openTest(t, t.TempDir(), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx, smtpDeliverer{d.addr}, &recorder{}); close(done) }()
	m := testMessage("a@example.net")
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delivery to start", func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.total == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	got, err := q.Get(context.Background(), m.ID)
	if err != nil || got.Attempts != 0 || got.NextAttempt.After(c.Now()) || got.Recipients[0].Status != Pending {
		t.Fatalf("after a shutdown mid-delivery: %+v, %v; want pending, no attempt counted, due now", got, err)
	}
}

// blockState makes message id's state impossible to write or remove, as
// a full or read-only disk does (a test run as root writes anywhere): a
// directory, not empty, takes the place of its .json. The function it
// returns lifts the block.
func blockState(t *testing.T, q *Queue, id string) func() {
	t.Helper()
	path := filepath.Join(q.store.dir, id+stateExt)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeliveredButNotStored: when the outcome of an attempt cannot be
// stored (a full disk), a recipient the destination accepted is not sent
// again while the process runs, and the message leaves the queue once
// the disk lets it.
func TestDeliveredButNotStored(t *testing.T) {
	d := startDestination(t)
	q, c := runTest(t, testOptions, d, &recorder{})
	m := testMessage("a@example.net")
	m.NextAttempt = c.Now().Add(time.Minute)
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	unblock := blockState(t, q, m.ID)
	c.Advance(time.Minute)
	q.poke()
	eventually(t, "the delivery", func() bool { return len(d.received()) == 1 })
	eventually(t, "the recipient to be known delivered", func() bool {
		got, _ := q.Get(context.Background(), m.ID)
		return got == nil || got.Recipients[0].Status == Delivered
	})
	for range 3 { // the next attempts' times, had it been kept pending
		c.Advance(testOptions.MaxBackoff)
		q.poke()
	}
	unblock()
	c.Advance(testOptions.MaxBackoff)
	q.poke()
	eventually(t, "the queue to empty", empty(q))
	if got := d.received(); len(got) != 1 {
		t.Errorf("the destination received %d copies (%v), want 1", len(got), got)
	}
}

// TestExpiryNotStored: an expiry that cannot be stored is tried again
// later (the gateway does not fall over), then the sender is told.
func TestExpiryNotStored(t *testing.T) {
	d := startDestination(t)
	d.reply("a@example.net", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"})
	n := &recorder{}
	logs := &syncbuf.Buffer{}
	opts := testOptions
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	q, c := runTest(t, opts, d, n)
	m := testMessage("a@example.net")
	m.NextAttempt = c.Now().Add(testOptions.MaxAge + time.Hour) // no attempt before it expires
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	unblock := blockState(t, q, m.ID)
	c.Advance(testOptions.MaxAge)
	q.poke()
	eventually(t, "the expiry to fail", func() bool { return strings.Contains(logs.String(), "storing a message's state failed") })
	unblock()
	c.Advance(testOptions.MinBackoff)
	q.poke()
	eventually(t, "the queue to empty", empty(q))
	if failed, _ := n.calls(); len(failed) != 1 || len(failed[0]) != 1 || !strings.HasPrefix(failed[0][0].Reply, "expired") {
		t.Errorf("the Notifier was told %+v, want a@example.net expired", failed)
	}
}
