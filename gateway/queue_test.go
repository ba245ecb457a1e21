package gateway_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// TestQueueDeliversThroughRelay: a message in the gateway's queue goes
// out through the current generation's relay to the destination's MX;
// a recipient the destination refuses for good is reported failed and
// the message leaves the queue.
func TestQueueDeliversThroughRelay(t *testing.T) {
	e := startEnv(t, envOptions{})
	q := e.gw.Queue()
	if q == nil {
		t.Fatal("the gateway serves without a queue")
	}
	m := &queue.Message{Kind: queue.Forward, From: "srs0=x@ours.test", Sender: "alice@example.org",
		Recipients: []queue.Recipient{{Orig: "info@ours.test", To: "me@dest.test"}, {Orig: "bad@ours.test", To: "bad@dest.test"}},
		Data:       []byte("From: alice@example.org\r\nSubject: queued\r\n\r\nhello from the queue\r\n")}
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, _ := q.List(context.Background())
		if len(list) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still queued: %+v", list)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || got[0].from != m.From || strings.Join(got[0].to, ",") != "me@dest.test" ||
		!strings.Contains(string(got[0].data), "hello from the queue") {
		t.Fatalf("the destination received %+v", got)
	}
	logs := e.logs.String()
	for _, want := range []string{"msg=\"queue attempt\" id=" + m.ID, "delivered=me@dest.test", "failed=bad@dest.test",
		"reply=\"550 5.1.1 The email account", "msg=\"no DSN: neither SPF nor DMARC authenticated the sender (backscatter)\" id=" + m.ID} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log has no %q", want)
		}
	}
}

// TestQueueLockedByServingGateway: sluice check (gateway.Check) works
// while a gateway serves (it does not open the queue), and a second
// gateway on the same queue directory fails to start.
func TestQueueLockedByServingGateway(t *testing.T) {
	e := startEnv(t, envOptions{})
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.Check(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("check while a gateway serves: %v", err)
	}
	cfg.SMTP.Listen = []string{"127.0.0.1:0"}
	cfg.HTTPS.Listen = nil
	off := "" // not the default 127.0.0.1:8025, which a demo may hold
	cfg.Admin.Listen = &off
	g, err := gateway.New(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Listen(); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("Listen of a second gateway on the same queue: %v, want in use", err)
	}
}
