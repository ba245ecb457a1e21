package queue

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testMessage is a message to one or more addresses.
func testMessage(to ...string) *Message {
	m := &Message{Kind: Forward, From: "srs@example.org", Sender: "alice@example.org", MayBounce: true,
		Data: []byte("Subject: test\r\n\r\nbody of a message\r\n")}
	for _, t := range to {
		m.Recipients = append(m.Recipients, Recipient{Orig: "info@example.com", To: t})
	}
	return m
}

func openTest(t *testing.T, dir string, opts Options) *Queue {
	t.Helper()
	q, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestEnqueueSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		m := testMessage(fmt.Sprintf("u%d@example.net", i), "v@EXAMPLE.net")
		m.Data = []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))
		if err := q.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
		if m.ID == "" {
			t.Fatal("Enqueue set no ID")
		}
		ids = append(ids, m.ID)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, dir, Options{})
	list, err := q.List(ctx)
	if err != nil || len(list) != len(ids) {
		t.Fatalf("after reopening, List = %d messages (%v), want %d", len(list), err, len(ids))
	}
	for i, id := range ids {
		m, err := q.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if want := fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i); string(m.Data) != want {
			t.Errorf("message %s: Data = %q, want %q", id, m.Data, want)
		}
		if len(m.Recipients) != 2 || m.Recipients[0].Status != Pending || m.Sender != "alice@example.org" || !m.MayBounce {
			t.Errorf("message %s came back as %+v", id, m)
		}
	}
}

func TestEnqueueRefuses(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	for name, m := range map[string]*Message{
		"two domains":   testMessage("a@example.net", "b@example.com"),
		"no recipients": testMessage(),
		"no domain":     testMessage("postmaster"),
		"no data":       {Recipients: []Recipient{{To: "a@example.net"}}},
	} {
		if err := q.Enqueue(context.Background(), m); err == nil {
			t.Errorf("%s: Enqueue accepted it", name)
		}
	}
	if list, _ := q.List(context.Background()); len(list) != 0 {
		t.Errorf("the queue holds %d messages after refusals", len(list))
	}
}

// TestEnqueueIDNDomain: a domain in U-labels is the domain of its
// A-labels, as the relay looks it up.
func TestEnqueueIDNDomain(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	m := testMessage("me@bücher.example", "you@xn--bcher-kva.example")
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if d := m.Domain(); d != "xn--bcher-kva.example" {
		t.Errorf("Domain() = %q, want the A-labels", d)
	}
}

// TestOpenLocks: one process per queue directory; the lock goes with
// Close (and with the process).
func TestOpenLocks(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// flock locks are per open file description: a second Open in the
	// same process conflicts just as another process would.
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open: %v, want in use", err)
	}
	q.Close()
	q2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	q2.Close()
}

// TestOpenRemovesHalfWritten: what a crash leaves in the middle of a
// write or a delete is cleaned up, and what was committed stays.
func TestOpenRemovesHalfWritten(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	m := testMessage("a@example.net")
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	q.Close()
	for name, content := range map[string]string{
		"0001" + dataExt:                    "an Enqueue that never wrote its state",
		"0002" + stateExt:                   `{"Kind":"forward"}`, // its data never renamed
		m.ID + stateExt + ".abcd" + tmpExt:  "half a state update",
		"0003" + dataExt + ".beef" + tmpExt: "half a message",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q = openTest(t, dir, Options{})
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{m.ID + dataExt, m.ID + stateExt, lockName}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("after Open the directory holds %v, want %v", names, want)
	}
	if list, _ := q.List(context.Background()); len(list) != 1 || list[0].ID != m.ID {
		t.Errorf("List = %+v, want only %s", list, m.ID)
	}
}

// A state file that cannot be parsed (a disk's fault, a bad edit) does
// not keep the queue from opening: its message is set aside, whole, and
// logged, and the others are delivered as usual.
func TestOpenSetsAsideUnreadable(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	good, bad := testMessage("a@example.net"), testMessage("b@example.net")
	for _, m := range []*Message{good, bad} {
		if err := q.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	state, _ := os.ReadFile(filepath.Join(dir, bad.ID+stateExt))
	if err := os.WriteFile(filepath.Join(dir, bad.ID+stateExt), state[:len(state)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	q, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open with one damaged state file: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	if list, _ := q.List(context.Background()); len(list) != 1 || list[0].ID != good.ID {
		t.Errorf("List = %+v, want only %s", list, good.ID)
	}
	for _, name := range []string{bad.ID + stateExt, bad.ID + dataExt} {
		if _, err := os.Stat(filepath.Join(dir, corruptDir, name)); err != nil {
			t.Errorf("the damaged message's %s is not kept in %s: %v", name, corruptDir, err)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dir, corruptDir, bad.ID+dataExt)); !bytes.Equal(data, bad.Data) {
		t.Errorf("the damaged message's data = %q, want %q", data, bad.Data)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), bad.ID) {
		t.Errorf("no error logged naming %s: %s", bad.ID, logs.String())
	}
}

// An enqueue whose state cannot be written (a full disk) leaves nothing
// behind: its data would take space until the next start.
func TestCreateFailedLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	m := testMessage("a@example.net")
	m.ID = "0001"
	// A directory where the state goes: writing it fails, as on a full disk.
	if err := os.MkdirAll(filepath.Join(dir, m.ID+stateExt, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := q.store.create(m); err == nil {
		t.Fatal("create succeeded without its state")
	}
	if _, err := os.Stat(filepath.Join(dir, m.ID+dataExt)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data of a message not queued is left: %v", err)
	}
}

// A message with no recipient pending (failed ones whose sender is not
// told yet) lists its recipients as [] in JSON, as GET /admin/queue/{id}
// does, not null.
func TestSummaryRecipientsNeverNull(t *testing.T) {
	m := testMessage("a@example.net")
	m.Recipients[0].Status = Failing
	b, err := json.Marshal(m.Summary())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"recipients":[]`) {
		t.Errorf("summary = %s, want \"recipients\":[]", b)
	}
}

// A message removed between Get's lookup and its read of the data is
// not found (GET /admin/queue/{id} answers 404), not a failure of the
// store. Delete removes the state, then the data: removing the data
// file alone is the moment between the two.
func TestGetRemovedMeanwhile(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	ctx := context.Background()
	m := testMessage("a@example.net")
	if err := q.Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, m.ID+dataExt)); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(ctx, m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a message whose data is gone: %v, want ErrNotFound", err)
	}
}

func TestOperations(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	dir := t.TempDir()
	q := openTest(t, dir, Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	a, b := testMessage("a@example.net"), testMessage("b@example.com")
	for _, m := range []*Message{a, b} {
		if err := q.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Hold(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	if err := q.Retry(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Get":     func() error { _, err := q.Get(ctx, b.ID); return err }(),
		"Retry":   q.Retry(ctx, b.ID),
		"Hold":    q.Hold(ctx, "nonesuch"),
		"Release": q.Release(ctx, "../lock"),
		"Delete":  q.Delete(ctx, b.ID),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a deleted message: %v, want ErrNotFound", name, err)
		}
	}
	q.Close()
	q = openTest(t, dir, Options{Now: func() time.Time { return now }})
	list, _ := q.List(ctx)
	if len(list) != 1 || list[0].ID != a.ID || !list[0].Held {
		t.Fatalf("after reopening, List = %+v, want %s held", list, a.ID)
	}
	if _, err := os.Stat(filepath.Join(dir, b.ID+dataExt)); !os.IsNotExist(err) {
		t.Errorf("the deleted message's data is still on disk: %v", err)
	}
	now = now.Add(time.Hour)
	if err := q.Release(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	m, err := q.Get(ctx, a.ID)
	if err != nil || m.Held || !m.NextAttempt.Equal(now) {
		t.Fatalf("after Release: %+v, %v; want not held, due %v", m, err, now)
	}
}

// TestEnqueueSurvivesSIGKILL: a child process enqueues and says each ID
// as soon as Enqueue returned; it is killed with SIGKILL in the middle of
// the run, and every ID it said is in the queue it left.
func TestEnqueueSurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv("QUEUE_TEST_CHILD_DIR"); dir != "" {
		enqueueForever(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEnqueueSurvivesSIGKILL$")
	cmd.Env = append(os.Environ(), "QUEUE_TEST_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var said []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(said) < 200 {
		if id, ok := strings.CutPrefix(sc.Text(), "queued "); ok {
			said = append(said, id)
		}
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Open while the child holds the queue: %v, want in use", err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(said) < 200 {
		t.Fatalf("the child said %d IDs before it ended", len(said))
	}
	q := openTest(t, dir, Options{})
	for _, id := range said {
		m, err := q.Get(context.Background(), id)
		if err != nil {
			t.Errorf("message %s, queued before the kill: %v", id, err)
			continue
		}
		if !bytes.HasPrefix(m.Data, []byte("Subject: test")) || len(m.Recipients) != 1 {
			t.Errorf("message %s came back as %+v", id, m)
		}
	}
}

func enqueueForever(dir string) {
	q, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		m := testMessage("a@example.net")
		if err := q.Enqueue(context.Background(), m); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("queued %s\n", m.ID)
	}
}

func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}
