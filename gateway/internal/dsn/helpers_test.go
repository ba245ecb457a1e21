package dsn

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// memQueue keeps what is enqueued, in order, as the queue would hand it
// on; err, if set, is what Enqueue fails with.
type memQueue struct {
	mu   sync.Mutex
	msgs []*queue.Message
	err  error
}

func (q *memQueue) Enqueue(_ context.Context, m *queue.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return q.err
	}
	m.ID = fmt.Sprintf("q%d", len(q.msgs)+1)
	q.msgs = append(q.msgs, m)
	return nil
}

func (q *memQueue) queued() []*queue.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*queue.Message(nil), q.msgs...)
}

// counts records Config.Count's calls as "kind/result" → n.
type counts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counts) count(kind, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[kind+"/"+result]++
}

func (c *counts) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// testEnv is a Notifier writing to a memQueue, signing as ours.test with
// an RSA and an Ed25519 key, whose records dkimpy is given.
type testEnv struct {
	n       *Notifier
	q       *memQueue
	counts  *counts
	clock   *fakeclock.Clock
	records map[string]string
}

func newTestEnv(t *testing.T, edit func(*Config)) *testEnv {
	t.Helper()
	rsaKey, err := dkim.LoadKey("../dkim/testdata/rsa2048-pkcs8.pem")
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := []dkim.Key{{Selector: "rsa1", Signer: rsaKey}, {Selector: "ed1", Signer: edKey}}
	signer, err := dkim.NewSigner(dkim.SignerConfig{Domain: "ours.test", Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{q: &memQueue{}, counts: &counts{}, records: map[string]string{},
		clock: fakeclock.New(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))}
	for _, k := range keys {
		txt, err := dkim.TXTRecord(k.Signer)
		if err != nil {
			t.Fatal(err)
		}
		e.records[k.Selector+"._domainkey.ours.test."] = txt
	}
	c := Config{
		Hostname: "mx.ours.test",
		Queue:    e.q,
		Signer:   func() *dkim.Signer { return signer },
		Domain:   "unused.test",
		MaxAge:   5 * 24 * time.Hour,
		Limit:    100,
		Count:    e.counts.count,
		Now:      e.clock.Now,
	}
	if edit != nil {
		edit(&c)
	}
	e.n = New(c)
	return e
}

// original is a forwarded message as the queue holds it: our trace
// fields on top of the sender's header.
const original = "Received: from mail.sender.test (mail.sender.test [192.0.2.7])\r\n" +
	"\tby mx.ours.test with ESMTPS id S1; Mon, 2 Mar 2026 09:00:00 +0000\r\n" +
	"From: Alice <alice@sender.test>\r\n" +
	"To: info@ours.test\r\n" +
	"Subject: The quarterly figures\r\n" +
	"Message-ID: <figures-1@sender.test>\r\n" +
	"Date: Mon, 2 Mar 2026 08:59:00 +0000\r\n" +
	"\r\n" +
	"The figures are attached.\r\n"

// forwarded is a queued forward from alice@sender.test, whom SPF or
// DMARC authenticated, to info@ours.test, forwarded to bob@dest.test.
func forwarded() *queue.Message {
	return &queue.Message{
		ID:        "m1",
		Kind:      queue.Forward,
		From:      "SRS0=abcd=XY=sender.test=alice@ours.test",
		Sender:    "alice@sender.test",
		MayBounce: true,
		Recipients: []queue.Recipient{{Orig: "info@ours.test", To: "bob@dest.test", Status: queue.Pending,
			Reply: "550 5.1.1 <bob@dest.test>: Recipient address rejected: User unknown", Remote: "mx.dest.test[192.0.2.25]:25"}},
		Arrived:   time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
		ClientIP:  "192.0.2.7",
		Helo:      "mail.sender.test",
		SessionID: "S1",
		Data:      []byte(original),
	}
}

// parsed is what testdata/parse.py makes of a message.
type parsed struct {
	Header     [][2]string   `json:"header"`
	Type       string        `json:"type"`
	ReportType string        `json:"report_type"`
	Defects    []string      `json:"defects"`
	Parts      []string      `json:"parts"`
	Encodings  []string      `json:"encodings"` // each part's Content-Transfer-Encoding
	Text       string        `json:"text"`
	Status     [][][2]string `json:"status"`
	Original   [][2]string   `json:"original"`
}

// parse parses msg with Python's email package.
func parse(t *testing.T, msg []byte) parsed {
	t.Helper()
	out := dkimpy.Run(t, "testdata/parse.py", dkimpy.WriteFile(t, "dsn.eml", msg))
	var p parsed
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("parse.py said %q: %v", out, err)
	}
	if len(p.Defects) > 0 {
		t.Errorf("Python's email package found defects: %v", p.Defects)
	}
	return p
}

// field returns the value of the named field of fields, "" if absent.
func field(fields [][2]string, name string) string {
	for _, f := range fields {
		if strings.EqualFold(f[0], name) {
			return f[1]
		}
	}
	return ""
}

// wantFields checks each field of want in fields.
func wantFields(t *testing.T, what string, fields [][2]string, want map[string]string) {
	t.Helper()
	for name, v := range want {
		if got := field(fields, name); got != v {
			t.Errorf("%s: %s = %q, want %q", what, name, got, v)
		}
	}
}

// verified checks that dkimpy verifies both our signatures on msg.
func (e *testEnv) verified(t *testing.T, msg []byte) {
	t.Helper()
	got := dkimpy.Check(t, msg, e.records)
	if len(got.DKIM) != 2 || !got.DKIM[0] || !got.DKIM[1] {
		t.Errorf("dkimpy: DKIM results %v, want two valid signatures", got.DKIM)
	}
}
