package smtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// The router's rules for these tests: addresses at example.test with
// several destinations, in one domain or two.
const multiRules = `
[[rule]]
match = "same@example.test"
action = "forward"
to = ["a@dest.test", "b@dest.test"]
[[rule]]
match = "team@example.test"
action = "forward"
to = ["a@dest.test", "b@dest2.test"]
[[rule]]
match = "team-bad@example.test"
action = "forward"
to = ["bad@dest.test", "b@dest2.test"]
[[rule]]
match = "one@example.test"
action = "forward"
to = "a@dest.test"
[[rule]]
match = "two@example.test"
action = "forward"
to = "c@dest2.test"
[[rule]]
match = "away@example.test"
action = "forward"
to = ["c@dest2.test", "d@dest2.test"]
`

// sink is a destination MX on loopback that keeps what it accepts. It
// refuses bad@ at RCPT, and at DATA a message that says so.
type sink struct {
	mu       sync.Mutex
	received []sunk
}

type sunk struct {
	from string
	to   []string
	data []byte
}

func (k *sink) deliveries() []sunk {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]sunk(nil), k.received...)
}

func (k *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkTxn{k: k}, nil }

type sinkTxn struct {
	k   *sink
	cur sunk
}

const sinkRefuseData = "X-Test: reject-at-data"

func (s *sinkTxn) Mail(from string, _ *smtp.MailOptions) error { s.cur = sunk{from: from}; return nil }
func (s *sinkTxn) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "bad@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such mailbox " + to}
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *sinkTxn) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if bytes.Contains(b, []byte(sinkRefuseData)) {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Refused by destination policy"}
	}
	s.cur.data = b
	s.k.mu.Lock()
	s.k.received = append(s.k.received, s.cur)
	n := len(s.k.received)
	s.k.mu.Unlock()
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: fmt.Sprintf("OK: stored as S%d", n)}
}
func (s *sinkTxn) Reset()        { s.cur = sunk{} }
func (s *sinkTxn) Logout() error { return nil }

// startSink starts a sink on addr ("127.0.0.2:25").
func startSink(t *testing.T, addr string) (*sink, int) {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	k := &sink{}
	s := smtp.NewServer(k)
	s.Domain = "mx.sink.test"
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return k, l.Addr().(*net.TCPAddr).Port
}

// memQueue is a queue.Enqueuer that keeps what it is given in memory,
// and fails from the failAt'th message on (0: never).
type memQueue struct {
	mu     sync.Mutex
	msgs   []*queue.Message
	failAt int
	calls  int
}

func (q *memQueue) Enqueue(_ context.Context, m *queue.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	if q.failAt > 0 && q.calls >= q.failAt {
		return errors.New("disk full")
	}
	m.ID = fmt.Sprintf("Q%d", q.calls)
	c := *m
	q.msgs = append(q.msgs, &c)
	return nil
}

func (q *memQueue) queued() []*queue.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*queue.Message(nil), q.msgs...)
}

// multiEnv is a Sluice SMTP server for example.test, routing with
// multiRules and relaying to two sinks, for dest.test (127.0.0.1) and
// dest2.test (127.0.0.2), on one port as the relay has one.
type multiEnv struct {
	addr        string
	dest, dest2 *sink
	logs        *syncbuf.Buffer
	srsRewriter *srs.Rewriter
	metrics     *prometheus.Registry
	mailOpts    *smtp.MailOptions // for send's MAIL
}

// startMulti starts it; q is the server's queue (nil: none).
func startMulti(t *testing.T, q queue.Enqueuer, queueAll bool) *multiEnv {
	t.Helper()
	e := &multiEnv{}
	var port int
	e.dest, port = startSink(t, "127.0.0.1:0")
	e.dest2, _ = startSink(t, fmt.Sprintf("127.0.0.2:%d", port))
	dns := dnstest.Start(t, `
dest.test.      300 IN MX 10 mx.dest.test.
mx.dest.test.   300 IN A 127.0.0.1
dest2.test.     300 IN MX 10 mx.dest2.test.
mx.dest2.test.  300 IN A 127.0.0.2
`)
	res, err := resolver.New(resolver.Config{Nameservers: []string{dns.Addr()}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Helo: "mx.example.test", Port: port}, res)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := srs.New(srs.Config{Domain: "example.test", Secrets: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.srsRewriter = rw
	p, err := newTestHost(t).Load(context.Background(), plugin.Spec{
		Name: "router", Path: wasmbuild.ForTest(t, "./plugins/router"), Config: []byte(multiRules),
		Hostname: "mx.example.test", Instances: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	gens, err := NewGenerations(Parts{Chain: plugin.NewChain(p), Relay: r, SRS: rw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gens.Close() })
	e.logs, e.metrics = &syncbuf.Buffer{}, prometheus.NewRegistry()
	cfg := Config{
		Hostname: "mx.example.test", Domains: []string{"example.test"}, MaxMessageSize: 1 << 20,
		MaxRecipients: 100, MaxConnections: 10, MaxConnectionsPerIP: 10, CommandTimeout: time.Minute,
		DataTimeout: time.Minute, MaxLineLength: 4096, MaxHops: 50, QueueAll: queueAll,
		Logger:  slog.New(slog.NewTextHandler(e.logs, nil)),
		Metrics: e.metrics,
	}
	if q != nil {
		cfg.Queue = q // a nil *memQueue would be a non-nil Enqueuer
	}
	srv, err := New(cfg, gens)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	e.addr = l.Addr().String()
	return e
}

func (e *multiEnv) log() string {
	return e.logs.String()
}

const multiMessage = "From: <alice@example.org>\r\nTo: <team@example.test>\r\nSubject: hello\r\n\r\nHello, team.\r\n"

// send sends msg from alice@example.org to rcpts in one transaction and
// returns each RCPT's error and DATA's reply (nil error: its 250 text).
func (e *multiEnv) send(t *testing.T, msg string, rcpts ...string) (rcptErrs []error, dataText string, dataErr error) {
	t.Helper()
	c, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.org", e.mailOpts); err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		rcptErrs = append(rcptErrs, err)
		if err == nil {
			accepted++
		}
	}
	if accepted == 0 {
		return rcptErrs, "", nil
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, msg)
	resp, err := w.CloseWithResponse()
	if err != nil {
		return rcptErrs, "", err
	}
	c.Quit()
	return rcptErrs, resp.StatusText, nil
}

// counter is the value of the counter name with the labels (name=value
// pairs), 0 if there is none.
func (e *multiEnv) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	if m := e.series(t, name, labels...); m != nil {
		return m.GetCounter().GetValue()
	}
	return 0
}

// has reports whether the metric name has a series with the labels.
func (e *multiEnv) has(t *testing.T, name string, labels ...string) bool {
	t.Helper()
	return e.series(t, name, labels...) != nil
}

// series is the first series of the metric name with the labels
// (name=value pairs), nil if there is none.
func (e *multiEnv) series(t *testing.T, name string, labels ...string) *dto.Metric {
	t.Helper()
	families, err := e.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			return m
		}
	}
	return nil
}

func wantCode(t *testing.T, what string, err error, code int, enh smtp.EnhancedCode) {
	t.Helper()
	var e *smtp.SMTPError
	if !errors.As(err, &e) || e.Code != code || e.EnhancedCode != enh {
		t.Errorf("%s: %v, want %d %v", what, err, code, enh)
	}
}

// Two destinations in one domain are relayed in session, both RCPTs in
// one transaction, and the destination's reply is the client's; nothing is
// queued.
func TestSeveralDestinationsOneDomain(t *testing.T) {
	q := &memQueue{}
	e := startMulti(t, q, false)
	rcptErrs, text, err := e.send(t, multiMessage, "same@example.test")
	if rcptErrs[0] != nil || err != nil {
		t.Fatalf("RCPT %v, DATA %v", rcptErrs[0], err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || strings.Join(got[0].to, ",") != "a@dest.test,b@dest.test" {
		t.Fatalf("dest.test received %+v, want one message for a@ and b@", got)
	}
	if text != "2.0.0 OK: stored as S1" {
		t.Errorf("DATA reply %q, want the destination's", text)
	}
	if n := len(q.queued()); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}

// With first_in_session, the first destination's domain is relayed in
// session (its reply is the client's) and the other is queued, after it,
// with the message as it left and the envelope the queue needs.
func TestSeveralDestinationsFirstInSession(t *testing.T) {
	q := &memQueue{}
	e := startMulti(t, q, false)
	rcptErrs, text, err := e.send(t, multiMessage, "team@example.test")
	if rcptErrs[0] != nil || err != nil {
		t.Fatalf("RCPT %v, DATA %v", rcptErrs[0], err)
	}
	if text != "2.0.0 OK: stored as S1" {
		t.Errorf("DATA reply %q, want the in-session destination's", text)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || strings.Join(got[0].to, ",") != "a@dest.test" {
		t.Fatalf("dest.test received %+v, want one message for a@", got)
	}
	if n := len(e.dest2.deliveries()); n != 0 {
		t.Errorf("dest2.test received %d messages in session, want it queued", n)
	}
	msgs := q.queued()
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	m := msgs[0]
	srsFrom, _ := e.srsRewriter.Forward("alice@example.org")
	if m.Kind != queue.Forward || m.From != srsFrom || m.Sender != "alice@example.org" || m.Domain() != "dest2.test" ||
		len(m.Recipients) != 1 || m.Recipients[0].Orig != "team@example.test" || m.Recipients[0].To != "b@dest2.test" ||
		m.Recipients[0].Status != queue.Pending || m.UTF8 || m.RequireTLS || m.MayBounce ||
		m.ClientIP != "127.0.0.1" || m.Helo != "client.example.org" || m.SessionID == "" || m.Arrived.IsZero() {
		t.Errorf("queued %+v", m)
	}
	// Without [auth], nothing says the sender is who it claims: no DSN
	// may go to it (MayBounce false above).
	if !bytes.Equal(m.Data, got[0].data) {
		t.Errorf("queued data differs from what the in-session destination got:\n%s\n---\n%s", m.Data, got[0].data)
	}
	if !strings.Contains(e.log(), "queued=team@example.test->b@dest2.test queue_ids=Q1") {
		t.Errorf("log does not name the queued copy:\n%s", e.log())
	}
}

// With queue_all, a recipient whose destinations are in two domains is
// relayed nowhere in session: both are queued, one message per domain,
// and the client's 250 names them.
func TestSeveralDestinationsQueueAll(t *testing.T) {
	q := &memQueue{}
	e := startMulti(t, q, true)
	rcptErrs, text, err := e.send(t, multiMessage, "team@example.test")
	if rcptErrs[0] != nil || err != nil {
		t.Fatalf("RCPT %v, DATA %v", rcptErrs[0], err)
	}
	if text != "2.0.0 OK: queued as Q1, Q2" {
		t.Errorf("DATA reply %q, want the queue's", text)
	}
	if n := len(e.dest.deliveries()) + len(e.dest2.deliveries()); n != 0 {
		t.Errorf("%d messages relayed in session, want none", n)
	}
	msgs := q.queued()
	if len(msgs) != 2 || msgs[0].Domain() != "dest.test" || msgs[1].Domain() != "dest2.test" ||
		msgs[0].Recipients[0].To != "a@dest.test" || msgs[1].Recipients[0].To != "b@dest2.test" {
		t.Fatalf("queued %+v, want a@dest.test then b@dest2.test", msgs)
	}
	if !strings.Contains(e.log(), "outcome=queued") || !strings.Contains(e.log(), "decided_by=queue") {
		t.Errorf("log line:\n%s", e.log())
	}
	if r, m := e.counter(t, "sluice_recipients_total", "outcome", "queued", "decided_by", "queue"),
		e.counter(t, "sluice_messages_total", "outcome", "queued"); r != 1 || m != 1 {
		t.Errorf("recipients queued by the queue %v, messages queued %v; want 1 and 1", r, m)
	}
	// A message that needs SMTPUTF8 (a UTF-8 header field, RFC 6532)
	// is queued as one; one whose client said SMTPUTF8 but that needs
	// nothing of it is not (message.NeedsSMTPUTF8, as the relay decides).
	e.mailOpts = &smtp.MailOptions{UTF8: true}
	utf8Message := strings.Replace(multiMessage, "Subject: hello", "Subject: héllo", 1)
	if _, _, err := e.send(t, utf8Message, "team@example.test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.send(t, multiMessage, "team@example.test"); err != nil {
		t.Fatal(err)
	}
	if msgs := q.queued(); len(msgs) != 6 || !msgs[2].UTF8 || !msgs[3].UTF8 || msgs[0].UTF8 || msgs[4].UTF8 || msgs[5].UTF8 {
		t.Errorf("UTF8 of the queued messages: %+v", msgs)
	}
	e.mailOpts = nil
	// One domain only: relayed in session as ever.
	_, text, err = e.send(t, multiMessage, "same@example.test")
	if err != nil || text != "2.0.0 OK: stored as S1" || len(q.queued()) != 6 {
		t.Errorf("one domain with queue_all: %q, %v, %d queued; want it relayed in session", text, err, len(q.queued()))
	}
}

// queue_all also applies when the second domain comes with a later
// recipient: the first, accepted at RCPT in session, is queued instead.
func TestQueueAllAcrossRecipients(t *testing.T) {
	q := &memQueue{}
	e := startMulti(t, q, true)
	rcptErrs, text, err := e.send(t, multiMessage, "one@example.test", "two@example.test")
	if rcptErrs[0] != nil || rcptErrs[1] != nil || err != nil {
		t.Fatalf("RCPT %v, DATA %v", rcptErrs, err)
	}
	msgs := q.queued()
	if text != "2.0.0 OK: queued as Q1, Q2" || len(msgs) != 2 || msgs[0].Recipients[0].To != "a@dest.test" || msgs[1].Recipients[0].To != "c@dest2.test" {
		t.Errorf("DATA %q, queued %+v; want both queued", text, msgs)
	}
	if n := len(e.dest.deliveries()); n != 0 {
		t.Errorf("dest.test received %d in session, want none", n)
	}
}

// When the in-session destination refuses, at RCPT or at DATA, the client
// gets its refusal and nothing is queued: the client's retry, or its
// bounce, covers every destination.
func TestSeveralDestinationsInSessionRefuses(t *testing.T) {
	q := &memQueue{}
	e := startMulti(t, q, false)
	rcptErrs, _, _ := e.send(t, multiMessage, "team-bad@example.test")
	wantCode(t, "RCPT team-bad@", rcptErrs[0], 550, smtp.EnhancedCode{5, 1, 1})
	_, _, err := e.send(t, sinkRefuseData+"\r\n"+multiMessage, "team@example.test")
	wantCode(t, "DATA refused in session", err, 554, smtp.EnhancedCode{5, 7, 1})
	if n := len(q.queued()); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}

// A copy that cannot be queued makes the reply 451: the client sends
// again (the in-session destination then gets a second copy: at least
// once, never lost).
func TestEnqueueFailureIsATempfail(t *testing.T) {
	q := &memQueue{failAt: 1}
	e := startMulti(t, q, false)
	_, _, err := e.send(t, multiMessage, "team@example.test")
	wantCode(t, "DATA", err, 451, smtp.EnhancedCode{4, 3, 0})
	if n := len(e.dest.deliveries()); n != 1 {
		t.Errorf("dest.test received %d, want the in-session copy", n)
	}
	// All queued: nothing reached a destination, and the client retries.
	qa := &memQueue{failAt: 1}
	ea := startMulti(t, qa, true)
	_, _, err = ea.send(t, multiMessage, "team@example.test")
	wantCode(t, "DATA, queue_all", err, 451, smtp.EnhancedCode{4, 3, 0})
	if !strings.Contains(ea.log(), "decided_by=queue") {
		t.Errorf("log:\n%s", ea.log())
	}
}

// With a queue, a second recipient in another domain is queued rather
// than deferred with 452 4.5.3; without one it is deferred as before, and
// a recipient whose destinations span domains cannot be forwarded at all.
func TestSecondDomainQueuedNotDeferred(t *testing.T) {
	q := &memQueue{}
	e := startMulti(t, q, false)
	rcptErrs, text, err := e.send(t, multiMessage, "one@example.test", "two@example.test", "away@example.test")
	if rcptErrs[0] != nil || rcptErrs[1] != nil || rcptErrs[2] != nil || err != nil {
		t.Fatalf("RCPT %v, DATA %v", rcptErrs, err)
	}
	msgs := q.queued()
	// two@ and away@ both go to c@: each is kept, so that a DSN names
	// both (the queue's deliverer sends c@ one copy).
	if text != "2.0.0 OK: stored as S1" || len(msgs) != 1 || !slices.Equal(msgs[0].Recipients, []queue.Recipient{
		{Orig: "two@example.test", To: "c@dest2.test", Status: queue.Pending},
		{Orig: "away@example.test", To: "c@dest2.test", Status: queue.Pending},
		{Orig: "away@example.test", To: "d@dest2.test", Status: queue.Pending},
	}) {
		t.Errorf("DATA %q, queued %+v; want one message for dest2.test, c@ for two@ and for away@, and d@", text, msgs)
	}

	e = startMulti(t, nil, false)
	rcptErrs, _, err = e.send(t, multiMessage, "one@example.test", "two@example.test", "team@example.test")
	if rcptErrs[0] != nil || err != nil {
		t.Fatalf("RCPT %v, DATA %v", rcptErrs[0], err)
	}
	wantCode(t, "second domain without a queue", rcptErrs[1], 452, smtp.EnhancedCode{4, 5, 3})
	wantCode(t, "two domains for one recipient without a queue", rcptErrs[2], 451, smtp.EnhancedCode{4, 3, 5})
}
