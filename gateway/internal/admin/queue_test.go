package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// memQueue is a queue in memory: what the handlers need of one, so that
// they are tested apart from the store (the binary's tests in
// cmd/sluice use the real queue end to end).
type memQueue struct {
	mu      sync.Mutex
	msgs    map[string]*queue.Message
	retried []string
	fail    error // every operation fails with it when set
}

func (q *memQueue) find(id string) (*queue.Message, error) {
	if q.fail != nil {
		return nil, q.fail
	}
	m, ok := q.msgs[id]
	if !ok {
		return nil, fmt.Errorf("queue: %s: %w", id, queue.ErrNotFound)
	}
	return m, nil
}

func (q *memQueue) List(context.Context) ([]queue.Summary, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return nil, q.fail
	}
	var l []queue.Summary
	for _, m := range q.msgs {
		l = append(l, m.Summary())
	}
	slices.SortFunc(l, func(a, b queue.Summary) int { return strings.Compare(a.ID, b.ID) })
	return l, nil
}

func (q *memQueue) Get(_ context.Context, id string) (*queue.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.find(id)
}

func (q *memQueue) op(id string, f func(*queue.Message)) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, err := q.find(id)
	if err == nil {
		f(m)
	}
	return err
}

func (q *memQueue) Retry(_ context.Context, id string) error {
	return q.op(id, func(*queue.Message) { q.retried = append(q.retried, id) })
}
func (q *memQueue) Hold(_ context.Context, id string) error {
	return q.op(id, func(m *queue.Message) { m.Held = true })
}
func (q *memQueue) Release(_ context.Context, id string) error {
	return q.op(id, func(m *queue.Message) { m.Held = false })
}
func (q *memQueue) Delete(_ context.Context, id string) error {
	return q.op(id, func(*queue.Message) { delete(q.msgs, id) })
}

func queueServer(t *testing.T) (*httptest.Server, *memQueue) {
	t.Helper()
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	q := &memQueue{msgs: map[string]*queue.Message{
		"a1": {ID: "a1", Kind: queue.Forward, From: "SRS0=x=yy=example.org=alice@ours.test", Sender: "alice@example.org", MayBounce: true,
			Recipients: []queue.Recipient{
				{Orig: "info@ours.test", To: "bob@dest.test", Status: queue.Pending, Reply: "451 4.3.0 try later", Remote: "mx.dest.test"},
				{Orig: "team@ours.test", To: "carol@dest.test", Status: queue.Delivered, Reply: "250 ok", Remote: "mx.dest.test"},
			},
			Arrived: at, ClientIP: "192.0.2.1", Helo: "client.example.org", SessionID: "s1",
			Data:     []byte("Received: from client\r\n by mx.ours.test\r\nSubject: hello\r\n\r\nsecret body\r\n"),
			Attempts: 2, NextAttempt: at.Add(time.Hour), LastError: "451 4.3.0 try later"},
		"b2": {ID: "b2", Kind: queue.DSN, Recipients: []queue.Recipient{{To: "alice@example.org", Status: queue.Pending}}, Arrived: at, Held: true,
			Data: []byte("Subject: Undelivered\r\n\r\nx\r\n")},
		"c3": {ID: "c3", Kind: queue.Forward, Sender: "dave@example.net", Recipients: []queue.Recipient{{To: "eve@other.test", Status: queue.Pending}}, Arrived: at,
			Data: []byte("\r\n")},
	}}
	srv := httptest.NewServer(Handler(Config{Hosts: []string{"mx.ours.test"}, Queue: q, Chain: func() Chain { return Chain{} }}))
	t.Cleanup(srv.Close)
	return srv, q
}

// do sends a request and decodes the JSON answer into v.
func do(t *testing.T, method, url string, v any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Errorf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode
}

func ids(l []queue.Summary) []string {
	var s []string
	for _, m := range l {
		s = append(s, m.ID)
	}
	return s
}

// GET /admin/queue lists the summaries, filtered by domain, sender, kind
// and held; a filter that makes no sense is a 400.
func TestQueueList(t *testing.T) {
	srv, _ := queueServer(t)
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{"a1", "b2", "c3"}},
		{"?domain=dest.test", []string{"a1"}},
		{"?domain=DEST.test.", []string{"a1"}},
		{"?sender=Alice@example.org", []string{"a1"}},
		{"?kind=dsn", []string{"b2"}},
		{"?held=true", []string{"b2"}},
		{"?held=false", []string{"a1", "c3"}},
		{"?held=false&kind=forward&domain=other.test", []string{"c3"}},
		{"?domain=nowhere.test", nil},
	} {
		var l []queue.Summary
		if code := do(t, "GET", srv.URL+"/admin/queue"+c.query, &l); code != 200 || !slices.Equal(ids(l), c.want) || l == nil {
			t.Errorf("GET /admin/queue%s: %d %v, want 200 %v", c.query, code, ids(l), c.want)
		}
	}
	var l []queue.Summary
	do(t, "GET", srv.URL+"/admin/queue?domain=dest.test", &l)
	if s := l[0]; s.Size == 0 || s.Attempts != 2 || s.LastError != "451 4.3.0 try later" || !slices.Equal(s.Recipients, []string{"bob@dest.test"}) {
		t.Errorf("summary %+v: want size, attempts, last error and only the pending recipient", s)
	}
	for _, q := range []string{"?kind=spam", "?held=maybe"} {
		var a queueAnswer
		if code := do(t, "GET", srv.URL+"/admin/queue"+q, &a); code != http.StatusBadRequest || a.OK || a.Error == "" {
			t.Errorf("GET /admin/queue%s: %d %+v, want 400 and the error", q, code, a)
		}
	}
}

// GET /admin/queue/{id} shows every recipient with its reply, and the
// header fields but not the body.
func TestQueueShow(t *testing.T) {
	srv, _ := queueServer(t)
	var m QueueMessage
	if code := do(t, "GET", srv.URL+"/admin/queue/a1", &m); code != 200 {
		t.Fatalf("GET /admin/queue/a1: %d", code)
	}
	want := []QueueRecipient{
		{Orig: "info@ours.test", To: "bob@dest.test", Status: queue.Pending, Reply: "451 4.3.0 try later", Remote: "mx.dest.test"},
		{Orig: "team@ours.test", To: "carol@dest.test", Status: queue.Delivered, Reply: "250 ok", Remote: "mx.dest.test"},
	}
	if !slices.Equal(m.Recipients, want) {
		t.Errorf("recipients %+v, want %+v", m.Recipients, want)
	}
	if !slices.Equal(m.Header, []string{"Received: from client\r\n by mx.ours.test", "Subject: hello"}) {
		t.Errorf("header %q", m.Header)
	}
	if m.ID != "a1" || m.Sender != "alice@example.org" || m.Domain != "dest.test" || m.ClientIP != "192.0.2.1" || !m.MayBounce || m.Attempts != 2 {
		t.Errorf("message %+v", m)
	}
	resp, err := http.Get(srv.URL + "/admin/queue/a1")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), "Subject: hello") || strings.Contains(string(raw), "secret body") {
		t.Error("the body is shown")
	}
	var a queueAnswer
	if code := do(t, "GET", srv.URL+"/admin/queue/zz", &a); code != http.StatusNotFound || a.OK || !strings.Contains(a.Error, "no such message") {
		t.Errorf("GET /admin/queue/zz: %d %+v, want 404 and the error", code, a)
	}
}

// Hold, release, retry and delete act on one message; retry of all
// leaves the held ones; an unknown ID is a 404; a failing queue a 500.
func TestQueueOperations(t *testing.T) {
	srv, q := queueServer(t)
	var a queueAnswer
	if code := do(t, "POST", srv.URL+"/admin/queue/a1/hold", &a); code != 200 || !a.OK || a.ID != "a1" || !q.msgs["a1"].Held {
		t.Errorf("hold: %d %+v held=%v", code, a, q.msgs["a1"].Held)
	}
	if code := do(t, "POST", srv.URL+"/admin/queue/b2/release", &a); code != 200 || q.msgs["b2"].Held {
		t.Errorf("release: %d %+v", code, a)
	}
	if code := do(t, "POST", srv.URL+"/admin/queue/c3/retry", &a); code != 200 || !slices.Equal(q.retried, []string{"c3"}) {
		t.Errorf("retry: %d %v", code, q.retried)
	}
	q.retried = nil
	a = queueAnswer{}
	if code := do(t, "POST", srv.URL+"/admin/queue/retry", &a); code != 200 || a.Retried == nil || *a.Retried != 2 || !slices.Equal(q.retried, []string{"b2", "c3"}) {
		t.Errorf("retry all: %d %+v %v; want b2 and c3, not the held a1", code, a, q.retried)
	}
	if code := do(t, "DELETE", srv.URL+"/admin/queue/c3", &a); code != 200 || q.msgs["c3"] != nil {
		t.Errorf("delete: %d %+v", code, a)
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/admin/queue/c3/retry"}, {"POST", "/admin/queue/c3/hold"}, {"POST", "/admin/queue/c3/release"}, {"DELETE", "/admin/queue/c3"},
	} {
		a = queueAnswer{}
		if code := do(t, c.method, srv.URL+c.path, &a); code != http.StatusNotFound || a.OK || a.Error == "" {
			t.Errorf("%s %s after delete: %d %+v, want 404", c.method, c.path, code, a)
		}
	}
	q.fail = errors.New("store: disk on fire")
	for _, c := range []struct{ method, path string }{
		{"GET", "/admin/queue"}, {"GET", "/admin/queue/a1"}, {"POST", "/admin/queue/a1/retry"}, {"POST", "/admin/queue/retry"},
	} {
		a = queueAnswer{}
		if code := do(t, c.method, srv.URL+c.path, &a); code != http.StatusInternalServerError || a.Error != "store: disk on fire" {
			t.Errorf("%s %s with a failing store: %d %+v, want 500 and the error", c.method, c.path, code, a)
		}
	}
}

// Changing the queue is POST or DELETE only, and a browser's request from
// another site may not.
func TestQueueChangesNeedPost(t *testing.T) {
	srv, q := queueServer(t)
	if got := adminRequest(t, srv, "GET", "/admin/queue/a1/hold", "", nil); got != http.StatusMethodNotAllowed {
		t.Errorf("GET .../hold: %d, want 405", got)
	}
	if got := adminRequest(t, srv, "DELETE", "/admin/queue/a1", "", map[string]string{"Sec-Fetch-Site": "cross-site"}); got != http.StatusForbidden || q.msgs["a1"] == nil {
		t.Errorf("cross-site DELETE: %d, want 403 and the message kept", got)
	}
}

// Without a queue, the endpoints say so.
func TestNoQueue(t *testing.T) {
	srv := testServer(t)
	for _, path := range []string{"/admin/queue", "/admin/queue/a1"} {
		var a queueAnswer
		if code := do(t, "GET", srv.URL+path, &a); code != http.StatusServiceUnavailable || a.Error == "" {
			t.Errorf("GET %s without a queue: %d %+v, want 503", path, code, a)
		}
	}
}
