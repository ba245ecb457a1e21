package gateway_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
)

// The crash test (issue 12): the real binary is killed with SIGKILL at
// random points of a load run and started again on the same data_dir
// and ports, and every 250 the clients got is compared with what the
// destinations received.
//
// What must hold:
//
//   - every message a client was told 250 for reaches each of its
//     destinations at least once (0 lost), once the queue has drained;
//   - a copy reaches a destination only for an attempt that the client
//     was told 250 for or saw no reply to;
//   - a destination has a message twice only where a kill explains it:
//     the client saw no reply for the attempt that made the earlier copy
//     (it retried, as it must), or, for a queued copy, a kill came
//     between the two deliveries (the destination's 250 came in, the
//     process died before recording it, and the restarted one tried
//     again: the at-least-once of any queue), or the destination
//     dropped the connection after storing the earlier copy, before its
//     250 (a fault the destinations play now and then).
//
// SLUICE_CRASH_MESSAGES and SLUICE_CRASH_KILLS make it longer (make bench).
func TestCrashAtRandomPoints(t *testing.T) {
	messages, kills := envInt(t, "SLUICE_CRASH_MESSAGES", 300), envInt(t, "SLUICE_CRASH_KILLS", 3)
	bin := buildSluice(t)
	t.Run("in session", func(t *testing.T) {
		addr := freeLoopbackAddr(t)
		e := prepareEnv(t, envOptions{listen: fmt.Sprintf("[%q]", addr)})
		dropSomeReplies(e.dest)
		r := crashRun{t: t, bin: bin, cfg: e.cfgPath, addr: addr, rcpt: "info@ours.test",
			messages: messages, kills: kills, dests: map[string]*destination{"dest.test": e.dest}}
		r.run()
	})
	// queue_all: a message for two destination domains is queued for
	// both before its 250; the queue delivers the copies, and is killed
	// in the middle of that too.
	t.Run("queued", func(t *testing.T) {
		addr := freeLoopbackAddr(t)
		e := prepareEnv(t, envOptions{
			listen:   fmt.Sprintf("[%q]", addr),
			sections: "[queue]\nmultiple_destinations = \"queue_all\"\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\n",
			plugins: routerPlugin(t) + `
[[plugin.config.rule]]
match = "both@ours.test"
action = "forward"
to = ["me@dest.test", "me@other.test"]
`,
		})
		// The second destination: other.test's MX, on another loopback
		// address and the same port (the relay's).
		other := startDestinationOn(t, "127.0.0.2:"+e.dest.port(), false)
		e.addRecords(t, "other.test. 300 IN MX 10 mx.other.test.\nmx.other.test. 300 IN A 127.0.0.2\n")
		dropSomeReplies(e.dest)
		dropSomeReplies(other)
		r := crashRun{t: t, bin: bin, cfg: e.cfgPath, addr: addr, rcpt: "both@ours.test", queued: true,
			messages: messages, kills: kills, dests: map[string]*destination{"dest.test": e.dest, "other.test": other}}
		r.run()
	})
}

// dropSomeReplies makes d store one message in 50 and drop the
// connection before its reply: the duplicate no one can avoid.
func dropSomeReplies(d *destination) {
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	d.setFaults(func() fault { // called under d.mu
		if rnd.IntN(50) == 0 {
			return dropReply
		}
		return noFault
	})
}

// envInt is the integer in the environment variable name, or def.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: not a count", name, v)
	}
	return n
}

// crashRun is one load run with kills, and its checks.
type crashRun struct {
	t              *testing.T
	bin, cfg, addr string
	rcpt           string // every message goes to it
	// queued says the destinations get their copies from the queue,
	// not in session: the check waits for them, and a kill between two
	// deliveries of one attempt explains a duplicate.
	queued          bool
	messages, kills int
	// dests are the destinations each message must reach, by domain.
	dests map[string]*destination
}

// crashCopy is one message received by one destination.
type crashCopy struct {
	id      string // the message's Message-ID
	attempt int    // the client's attempt that sent it
	seq     int    // its place in the destination's deliveries
	// replied is false when the destination stored it and then dropped
	// the connection before its 250 (a fault it plays now and then).
	replied bool
}

func (r *crashRun) run() {
	t := r.t
	p := &sluiceProcess{t: t, bin: r.bin, cfg: r.cfg, addr: r.addr, logs: &syncbuf.Buffer{}}
	p.start()
	t.Cleanup(p.stop)

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 1))

	const clients = 8
	var (
		mu       sync.Mutex
		outcomes = map[string]map[int]string{} // id → attempt → outcome
		finals   = map[string]string{}
		finished atomic.Int64
		ids      = make(chan string)
		wg       sync.WaitGroup
	)
	message := func(id string, attempt int) string {
		return fmt.Sprintf("From: Alice <alice@example.org>\r\nTo: %s\r\nSubject: crash test\r\n"+
			"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s>\r\nX-Test-Attempt: %d\r\n\r\nHello.\r\n", r.rcpt, id, attempt)
	}
	for range clients {
		wg.Go(func() {
			c := &retryingClient{addr: r.addr, rcpt: r.rcpt, message: message}
			defer c.close()
			for id := range ids {
				out := c.deliver(id, func(n int, out string) {
					mu.Lock()
					defer mu.Unlock()
					if outcomes[id] == nil {
						outcomes[id] = map[int]string{}
					}
					outcomes[id][n] = out
				})
				mu.Lock()
				finals[id] = out
				mu.Unlock()
				finished.Add(1)
			}
		})
	}

	// The kills: each at a random point of its share of the run, then a
	// random delay more, so that they land in every phase of sessions
	// and of queued deliveries. killMarks[k] is how many copies each
	// destination had once the k-th kill was done.
	var killMarks []map[string]int
	done := make(chan struct{})
	go func() {
		defer close(done)
		share := r.messages / (r.kills + 1)
		for k := range r.kills {
			target := int64(k*share + share/2 + rnd.IntN(share+1))
			for finished.Load() < target {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(time.Duration(rnd.IntN(20_000)) * time.Microsecond)
			p.kill()
			marks := map[string]int{}
			for dom, d := range r.dests {
				marks[dom] = len(d.deliveries())
			}
			killMarks = append(killMarks, marks)
			p.start()
		}
	}()
	for i := range r.messages {
		ids <- fmt.Sprintf("crash-%06d@example.org", i)
	}
	close(ids)
	wg.Wait()
	<-done

	// Every message told 250 reaches every destination: at once when
	// relayed in session, once the queue drained when queued.
	copies := func() map[string][]crashCopy {
		all := map[string][]crashCopy{}
		for dom, d := range r.dests {
			for seq, dl := range d.deliveries() {
				id := headerValue(dl.data, "Message-ID")
				n, _ := strconv.Atoi(headerValue(dl.data, "X-Test-Attempt"))
				all[dom] = append(all[dom], crashCopy{id: strings.Trim(id, "<>"), attempt: n, seq: seq, replied: dl.replied})
			}
		}
		return all
	}
	missing := func(all map[string][]crashCopy) []string {
		var lost []string
		for dom := range r.dests {
			have := map[string]bool{}
			for _, c := range all[dom] {
				have[c.id] = true
			}
			for id, out := range finals {
				if out == "250" && !have[id] {
					lost = append(lost, id+" at "+dom)
				}
			}
		}
		slices.Sort(lost)
		return lost
	}
	all := copies()
	if r.queued {
		for deadline := time.Now().Add(2 * time.Minute); len(missing(all)) > 0 && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			all = copies()
		}
	}
	if lost := missing(all); len(lost) > 0 {
		t.Errorf("%d messages told 250 never reached their destination: %v", len(lost), lost[:min(len(lost), 20)])
	}

	// Every copy comes from an attempt told 250 or unanswered; every
	// duplicate has its cause.
	var received, lostReply, destLost, inFlight int
	for dom, cs := range all {
		// id → attempt → its copies, in the order they arrived
		byID := map[string]map[int][]crashCopy{}
		for _, c := range cs {
			received++
			out := outcomes[c.id][c.attempt]
			// In session, a reply the destination never gave is the
			// client's 4xx; queued, it is the queue's to retry.
			if out != "250" && out != "conn" && !(out == "4xx" && !c.replied && !r.queued) {
				t.Errorf("%s at %s, attempt %d: the client was told %q, yet the destination has it", c.id, dom, c.attempt, out)
			}
			if byID[c.id] == nil {
				byID[c.id] = map[int][]crashCopy{}
			}
			byID[c.id][c.attempt] = append(byID[c.id][c.attempt], c)
		}
		for id, byAttempt := range byID {
			attempts := slices.Sorted(maps.Keys(byAttempt))
			for i, a := range attempts {
				// A copy of a later attempt: the client sent the message
				// again because it saw no reply to the earlier one (or,
				// in session, a 4xx for a reply the destination lost).
				if i > 0 {
					switch outcomes[id][attempts[i-1]] {
					case "conn":
						lostReply++
					case "4xx":
						destLost++
					default:
						t.Errorf("%s at %s: a copy of attempt %d after attempt %d was told %q", id, dom, a, attempts[i-1], outcomes[id][attempts[i-1]])
					}
				}
				// Copies of one attempt: the queue tried it again.
				cs := byAttempt[a]
				for j := 1; j < len(cs); j++ {
					switch prev := cs[j-1]; {
					case !prev.replied:
						destLost++ // the destination's reply to the earlier copy was lost
					case r.queued && killedBetween(killMarks, dom, prev.seq, cs[j].seq):
						inFlight++ // the queue's delivery was in flight at a kill
					default:
						t.Errorf("%s at %s: attempt %d arrived %d times, and nothing explains copy %d", id, dom, a, len(cs), j+1)
					}
				}
			}
		}
	}

	count := map[string]int{}
	attempts := 0
	for id, final := range finals {
		count[final]++
		attempts += len(outcomes[id])
		if final != "250" {
			t.Errorf("message %s ended with %q, after a minute of retries", id, final)
		}
	}
	if len(finals) != r.messages {
		t.Errorf("%d messages ended, want %d", len(finals), r.messages)
	}
	t.Logf("%d messages sent in %d attempts by %d clients, %d kills: %d told 250; %d copies received at %d destinations; "+
		"%d duplicates, each explained: %d by a reply the client never saw, %d by a queued delivery in flight at a kill, %d by a reply the destination never gave",
		r.messages, attempts, clients, p.killings, count["250"], received, len(r.dests), lostReply+inFlight+destLost, lostReply, inFlight, destLost)
	if t.Failed() {
		t.Logf("gateway log (all runs):\n%s", p.logs.String())
	}
}

// killedBetween says whether one of the kills came between the
// deliveries seq1 and seq2 at the destination of domain dom.
func killedBetween(marks []map[string]int, dom string, seq1, seq2 int) bool {
	for _, m := range marks {
		if seq1 < m[dom] && m[dom] <= seq2 {
			return true
		}
	}
	return false
}
