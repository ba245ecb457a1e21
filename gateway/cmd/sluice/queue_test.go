package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/admin"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/freeport"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// queueConfig is a gateway whose queued mail cannot leave: its resolver
// is a port where nothing answers, so each delivery fails for now and
// the messages stay, with their attempts and last error.
const queueConfig = `
hostname = "mx.ours.test"
domains = ["ours.test"]
data_dir = %q
[smtp]
listen = [%q]
[srs]
secrets = ["test-secret-0123456789abcdef"]
[auth]
enabled = false
[dns]
nameservers = ["127.0.0.1:9"]
timeout = "1s"
[admin]
listen = %q
watch_interval = "1h"
`

// queuedMessage is a message as the session would queue it.
func queuedMessage(kind queue.Kind, sender string, to ...string) *queue.Message {
	m := &queue.Message{Kind: kind, From: sender, Sender: sender, MayBounce: kind == queue.Forward && sender != "",
		ClientIP: "192.0.2.1", Helo: "client.example.org", SessionID: "s1",
		Data: []byte("From: <" + sender + ">\r\nSubject: queued for " + to[0] + "\r\n\r\nthe body, never shown\r\n")}
	for _, a := range to {
		m.Recipients = append(m.Recipients, queue.Recipient{Orig: "info@ours.test", To: a})
	}
	return m
}

// sluice queue, with the real binary against a real gateway and its real
// queue: list (table, JSON, filters), show, hold, release, retry, delete,
// and what they leave on disk.
func TestQueueCommands(t *testing.T) {
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	adminAddr := freeport.Addr(t)
	cfgPath := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(queueConfig, filepath.Join(dir, "data"), freeport.Addr(t), adminAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	// Queued before the gateway starts, as a previous run would have.
	q, err := queue.Open(cfg.QueueDir(), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fwd := queuedMessage(queue.Forward, "alice@example.org", "bob@dest.test", "carol@dest.test")
	dsn := queuedMessage(queue.DSN, "", "alice@example.org")
	other := queuedMessage(queue.Forward, "dave@example.net", "eve@other.test")
	for _, m := range []*queue.Message{fwd, dsn, other} {
		if err := q.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // distinct arrival times: list's order
	}
	q.Close()

	serve := startServe(t, bin, cfgPath)
	serve.waitLog(`msg="admin listening"`)

	sluice := func(want int, args ...string) string {
		t.Helper()
		out, code := runSluice(t, bin, append(append([]string{"queue"}, args...), "-c", cfgPath)...)
		if code != want {
			t.Fatalf("sluice queue %s: exit %d, want %d; it printed:\n%s", strings.Join(args, " "), code, want, out)
		}
		return out
	}
	listJSON := func(args ...string) []queue.Summary {
		t.Helper()
		var l []queue.Summary
		if err := json.Unmarshal([]byte(sluice(0, append([]string{"list", "-json"}, args...)...)), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	ids := func(l []queue.Summary) []string {
		var s []string
		for _, m := range l {
			s = append(s, m.ID)
		}
		return s
	}

	// The gateway tries them at once, and fails for now: the list
	// shows the attempt and why.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		l := listJSON("-sender", "alice@example.org")
		if len(l) == 1 && l[0].Attempts > 0 && l[0].LastError != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed attempt in a while: %+v", l)
		}
	}
	table := sluice(0, "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 5 || !regexp.MustCompile(`^ID +SIZE +ARRIVED +ATTEMPTS +NEXT ATTEMPT +SENDER +RECIPIENTS +LAST ERROR$`).MatchString(lines[0]) ||
		!strings.HasPrefix(lines[1], fwd.ID) || !strings.HasPrefix(lines[2], dsn.ID) || !strings.HasPrefix(lines[3], other.ID) ||
		!strings.HasPrefix(lines[4], "-- 3 messages, ") {
		t.Errorf("sluice queue list: want a header, the three messages oldest first and a total:\n%s", table)
	}
	if f := strings.Fields(lines[1]); len(f) < 10 || f[4] != "1" || !strings.HasSuffix(lines[1], "dest.test: MX lookup failed: connection refused") || !strings.Contains(lines[1], "alice@example.org") || !strings.Contains(lines[1], "bob@dest.test,carol@dest.test") ||
		!regexp.MustCompile(`\s<>\s+alice@example.org`).MatchString(lines[2]) {
		t.Errorf("sluice queue list: want an attempt, its error, senders (<> for the DSN) and recipients:\n%s", table)
	}

	if got := ids(listJSON("-domain", "dest.test")); !slices.Equal(got, []string{fwd.ID}) {
		t.Errorf("list -domain dest.test: %v, want %s", got, fwd.ID)
	}
	if got := ids(listJSON("-kind", "dsn")); !slices.Equal(got, []string{dsn.ID}) {
		t.Errorf("list -kind dsn: %v, want %s", got, dsn.ID)
	}
	if got := ids(listJSON("-sender", "dave@example.net")); !slices.Equal(got, []string{other.ID}) {
		t.Errorf("list -sender: %v, want %s", got, other.ID)
	}

	shown := sluice(0, "show", fwd.ID)
	for _, want := range []string{"ID:            " + fwd.ID, "Sender:        alice@example.org", "from 192.0.2.1 (client.example.org), session s1",
		"Last error:    451 4.4.3 dest.test: MX lookup failed", "  bob@dest.test (for info@ours.test): pending", "  carol@dest.test (for info@ours.test): pending", "Subject: queued for bob@dest.test"} {
		if !strings.Contains(shown, want) {
			t.Errorf("sluice queue show: no %q in\n%s", want, shown)
		}
	}
	if strings.Contains(shown, "never shown") {
		t.Errorf("sluice queue show printed the body:\n%s", shown)
	}
	var m admin.QueueMessage
	if err := json.Unmarshal([]byte(sluice(0, "show", fwd.ID, "-json")), &m); err != nil || len(m.Recipients) != 2 || m.Recipients[0].Status != queue.Pending {
		t.Errorf("show -json: %v %+v", err, m)
	}

	if out := sluice(0, "hold", fwd.ID, dsn.ID); out != fwd.ID+": held\n"+dsn.ID+": held\n" {
		t.Errorf("hold: %q", out)
	}
	if got := ids(listJSON("-held")); !slices.Equal(got, []string{fwd.ID, dsn.ID}) {
		t.Errorf("list -held after hold: %v", got)
	}
	if table := sluice(0, "list", "-held"); strings.Count(table, " held ") != 2 {
		t.Errorf("list -held: want held as the next attempt of both:\n%s", table)
	}
	if out := sluice(0, "retry", "-all"); out != "1 message to retry now\n" {
		t.Errorf("retry -all with two held: %q, want the one not held", out)
	}
	if out := sluice(0, "release", dsn.ID); out != dsn.ID+": released\n" {
		t.Errorf("release: %q", out)
	}
	if got := ids(listJSON("-held")); !slices.Equal(got, []string{fwd.ID}) {
		t.Errorf("list -held after release: %v", got)
	}
	if out := sluice(0, "retry", other.ID); out != other.ID+": to retry now\n" {
		t.Errorf("retry: %q", out)
	}
	if out := sluice(0, "delete", other.ID); out != other.ID+": deleted\n" {
		t.Errorf("delete: %q", out)
	}
	// An ID the queue does not hold is an error, after the others are done.
	out, code := runSluice(t, bin, "queue", "delete", other.ID, dsn.ID, "-admin", adminAddr)
	if code != 1 || out != dsn.ID+": deleted\n" {
		t.Errorf("delete of a deleted and a queued one: exit %d %q; want 1, the second deleted", code, out)
	}
	if _, code := runSluice(t, bin, "queue", "show", "nosuch", "-admin", adminAddr); code != 1 {
		t.Errorf("show nosuch: exit %d, want 1", code)
	}
	if got := ids(listJSON()); !slices.Equal(got, []string{fwd.ID}) {
		t.Errorf("list after the deletes: %v", got)
	}
	serve.stop()

	// What the commands did is on disk.
	q, err = queue.Open(cfg.QueueDir(), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	l, _ := q.List(context.Background())
	if len(l) != 1 || l[0].ID != fwd.ID || !l[0].Held {
		t.Errorf("the queue after the gateway stopped: %+v; want only %s, held", l, fwd.ID)
	}
}

// Without a gateway to ask, the commands say so.
func TestQueueCommandsWithoutAGateway(t *testing.T) {
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"queue", "list", "-admin", freeport.Addr(t)}, nil, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "is sluice serve running?") {
		t.Errorf("exit %d, stderr %q; want 1 and the question", code, stderr.String())
	}
	for _, args := range [][]string{{"queue", "retry"}, {"queue", "retry", "-all", "x"}, {"queue", "hold"}, {"queue", "show"}, {"queue", "list", "extra"}} {
		stderr.Reset()
		if code := run(context.Background(), args, nil, &stdout, &stderr); code != 2 {
			t.Errorf("sluice %s: exit %d, want 2 (a mistake); stderr %q", strings.Join(args, " "), code, stderr.String())
		}
	}
}
