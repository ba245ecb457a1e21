package gateway_test

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
)

var long = flag.Bool("sluice.long", false, "run the long soak of the reliability tests")

// What Sluice promises about loss and duplicates, and how this test
// checks it.
//
// Sluice forwards in session: it says 250 to the sending client only
// after the destination said 250 to the same message, and it never sends
// a message to the destination more than once for one transaction of the
// client (no queue, no retries of its own). So:
//
//   - a message the client was told 250 for is at the destination;
//   - a message refused with 5xx is not;
//   - a message refused with 4xx is not, unless the destination stored it
//     and then lost its reply (the classic duplicate of RFC 1047): Sluice
//     cannot know the destination accepted, and must not say 250;
//   - after a lost connection (Sluice killed, or the network), the client
//     cannot know either, and retries.
//
// A retry after a lost reply makes a second copy: that is at-least-once
// delivery, as between any two SMTP servers, and the window is the time
// between the destination's 250 and the client's. Sluice adds no copies
// of its own: each transaction of the client reaches the destination at
// most once.
//
// The test sends messages from several concurrent clients that retry as
// a real MTA does, through the real binary, which it kills with SIGKILL
// and restarts while the destination answers 4xx, 5xx, drops the
// connection in the middle of a message, or stores a message and drops
// the connection before its reply. Every attempt carries its message id
// and attempt number, and the test checks the promises above attempt by
// attempt.
func TestNoLossUnderFaultsAndKills(t *testing.T) {
	messages, clients, kills := 300, 8, 3
	if *long {
		messages, kills = 3000, 20
	}
	bin := buildSluice(t)
	addr := freeLoopbackAddr(t)
	e := prepareEnv(t, envOptions{listen: fmt.Sprintf("[%q]", addr)})
	e.addr = addr

	seed := uint64(time.Now().UnixNano())
	t.Logf("fault seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	e.dest.setFaults(func() fault {
		// Seven kinds, each about 6%; the rest go through.
		if f := fault(rnd.IntN(16)); f <= dropReply {
			return f
		}
		return noFault
	})

	p := &sluiceProcess{t: t, bin: bin, cfg: e.cfgPath, addr: addr, logs: &syncbuf.Buffer{}}
	p.start()
	t.Cleanup(p.stop)

	var (
		outcomes sync.Map     // "id/attempt" → outcome
		finals   sync.Map     // id → final outcome
		finished atomic.Int64 // messages that ended, whatever their end
		ids      = make(chan string)
		wg       sync.WaitGroup
	)
	for range clients {
		wg.Go(func() {
			c := &retryingClient{addr: addr}
			defer c.close()
			for id := range ids {
				out := c.deliver(id, func(n int, out string) { outcomes.Store(fmt.Sprintf("%s/%d", id, n), out) })
				finals.Store(id, out)
				finished.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := 1; k <= kills; k++ {
			for finished.Load() < int64(k*messages/(kills+1)) {
				time.Sleep(10 * time.Millisecond)
			}
			p.kill()
			p.start()
		}
	}()
	for i := range messages {
		ids <- fmt.Sprintf("m%04d", i)
	}
	close(ids)
	wg.Wait()
	<-done

	// What the destination has, by attempt.
	type stored struct{ count, unreplied int }
	at := map[string]*stored{}
	perMessage := map[string]int{}
	for _, d := range e.dest.deliveries() {
		id, n := headerValue(d.data, "X-Test-Id"), headerValue(d.data, "X-Test-Attempt")
		if id == "" || n == "" {
			t.Errorf("a delivery without its id: %.200q", d.data)
			continue
		}
		k := id + "/" + n
		if at[k] == nil {
			at[k] = &stored{}
		}
		at[k].count++
		if !d.replied {
			at[k].unreplied++
		}
		perMessage[id]++
	}

	count := map[string]int{}
	outcomes.Range(func(k, v any) bool {
		key, out := k.(string), v.(string)
		count[out]++
		s := at[key]
		if s == nil {
			s = &stored{}
		}
		switch {
		case s.count > 1:
			t.Errorf("%s reached the destination %d times: Sluice sent one transaction twice", key, s.count)
		case out == "250" && (s.count != 1 || s.unreplied != 0):
			t.Errorf("%s: the client was told 250, the destination has it %d times (%d unanswered)", key, s.count, s.unreplied)
		case (out == "5xx" || out == "conn before data") && s.count != 0:
			t.Errorf("%s: the client was told %s, yet the destination has it", key, out)
		case out == "4xx" && s.count != s.unreplied:
			t.Errorf("%s: the client was told 4xx although the destination answered 250", key)
		}
		return true
	})
	for k := range at {
		if _, ok := outcomes.Load(k); !ok {
			t.Errorf("the destination has %s, which no client sent", k)
		}
	}
	finalCount := map[string]int{}
	duplicates := 0
	finals.Range(func(k, v any) bool {
		id, out := k.(string), v.(string)
		finalCount[out]++
		if out != "250" && out != "5xx" {
			t.Errorf("message %s still failed with %q after a minute of retries", id, out)
		}
		if out == "250" && perMessage[id] == 0 {
			t.Errorf("message %s: the client was told 250 but the destination does not have it", id)
		}
		if perMessage[id] > 1 {
			duplicates += perMessage[id] - 1
		}
		return true
	})
	if n := finalCount["250"] + finalCount["5xx"]; n != messages {
		t.Errorf("%d messages ended, want %d", n, messages)
	}
	t.Logf("%d messages, %d clients, %d kills (%v to start serving, in all): finals %v; attempts %v; %d extra copies at the destination, each after a reply that was lost",
		messages, clients, kills, p.starting.Round(time.Millisecond), finalCount, sortedCounts(count), duplicates)
	if strings.Contains(p.logs.String(), "panic") {
		t.Errorf("the gateway panicked:\n%s", p.logs.String())
	}
	if t.Failed() {
		t.Logf("gateway log (all runs):\n%s", p.logs.String())
	}
}

func sortedCounts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+": "+strconv.Itoa(m[k]))
	}
	return strings.Join(parts, ", ")
}

// retryingClient sends messages as a sending MTA does: over one session
// while it works, a new one after a lost connection or a 421.
type retryingClient struct {
	addr string
	c    *smtp.Client
	// rcpt is the recipient, info@ours.test if empty; message, if set,
	// makes the message of each attempt.
	rcpt    string
	message func(id string, attempt int) string
}

func (r *retryingClient) close() {
	if r.c != nil {
		r.c.Close()
		r.c = nil
	}
}

// deliver sends message id until a 250 or a 5xx, retrying as an MTA
// does, if sooner, for up to a minute: while the gateway restarts,
// connections are refused. seen is told each attempt's outcome; the
// last is returned.
func (r *retryingClient) deliver(id string, seen func(attempt int, out string)) string {
	var out string
	giveUp := time.Now().Add(time.Minute)
	for n := 1; time.Now().Before(giveUp); n++ {
		out = r.send(id, n)
		seen(n, out)
		if out == "250" || out == "5xx" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return out
}

// send makes one attempt and says how it ended: "250", "4xx", "5xx",
// "conn before data" (the connection failed before the message was
// sent) or "conn" (it failed after: the client cannot know).
func (r *retryingClient) send(id string, attempt int) string {
	if r.c == nil {
		c, err := smtp.Dial(r.addr)
		if err != nil {
			return "conn before data"
		}
		if err := c.Hello("sender.example.org"); err != nil {
			c.Close()
			return r.classify(err, "conn before data")
		}
		r.c = c
	}
	lost := "conn before data"
	err := func() error {
		if err := r.c.Mail("alice@example.org", nil); err != nil {
			return err
		}
		rcpt := cmp.Or(r.rcpt, "info@ours.test")
		if err := r.c.Rcpt(rcpt, nil); err != nil {
			return err
		}
		w, err := r.c.Data()
		if err != nil {
			return err
		}
		lost = "conn"
		if r.message != nil {
			io.WriteString(w, r.message(id, attempt))
		} else {
			fmt.Fprintf(w, "X-Test-Id: %s\r\nX-Test-Attempt: %d\r\n%s", id, attempt, testMessage)
		}
		return w.Close()
	}()
	if err == nil {
		return "250"
	}
	out := r.classify(err, lost)
	if r.c != nil && out != "conn" && out != "conn before data" {
		if r.c.Reset() != nil {
			r.close()
		}
	}
	return out
}

func (r *retryingClient) classify(err error, lost string) string {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		r.close()
		return lost
	}
	if se.Code == 421 {
		r.close()
	}
	return fmt.Sprintf("%dxx", se.Code/100)
}

// sluiceProcess is the real binary, serving one configuration; it can be
// killed and started again on the same address.
type sluiceProcess struct {
	t                *testing.T
	bin, cfg, addr   string
	logs             *syncbuf.Buffer // every run's standard error
	mu               sync.Mutex
	cmd              *exec.Cmd
	starts, killings int
	starting         time.Duration // spent waiting for it to serve
}

func (p *sluiceProcess) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, "serve", "-c", p.cfg)
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.starts++
	p.mu.Unlock()
	began := time.Now()
	defer func() { p.starting += time.Since(began) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.t.Fatalf("sluice did not start serving on %s:\n%s", p.addr, p.logs.String())
		}
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		greeting, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.HasPrefix(greeting, "220 ") {
			return
		}
	}
}

// kill ends the process with SIGKILL: nothing is flushed or closed.
func (p *sluiceProcess) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p.killings++
}

func (p *sluiceProcess) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// buildSluice builds the binary, as a user would.
func buildSluice(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.Command("go", "build", "-o", path, "./cmd/sluice").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return path
}

// freeLoopbackAddr finds a port free now, for a listener that must keep
// its address across restarts.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
