package gateway_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/redistest"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// The timeouts of the outage tests' gateway: each key-value call gives up
// after kvTimeout, each ratelimit call after pluginTimeout.
const (
	kvTimeout     = 200 * time.Millisecond
	pluginTimeout = 500 * time.Millisecond
)

// outageFor is how long each outage lasts at least: longer than rediskv
// waits before it drops a connection that answers nothing, so that a
// paused Redis makes it reconnect.
const outageFor = 1500 * time.Millisecond

// The load: more clients than the ratelimit has instances, so that calls
// queue for one while Redis holds them.
const (
	loadClients        = 8
	ratelimitInstances = 2
)

// noHang bounds one transaction (MAIL, RCPT, DATA): at MAIL and at RCPT
// the ratelimit's call waits for a free instance at most pluginTimeout,
// then takes at most pluginTimeout (its one key-value call gives up
// sooner, at kvTimeout); each command is given a second more for the rest
// of its work on a busy machine. It is not a speed assertion: a
// transaction over it waited on something that has no deadline.
const noHang = 3 * (2*pluginTimeout + time.Second)

// ratelimitUnderLoad is the outage tests' chain: the ratelimit plugin
// counting each client at MAIL and each recipient at RCPT, both in the
// key-value store, with limits the load never reaches, then the router.
func ratelimitUnderLoad(t *testing.T, onFailure string) string {
	return fmt.Sprintf(`
[[plugin]]
name = "ratelimit"
path = %q
stages = ["mail", "rcpt"]
capabilities = ["kv"]
timeout = %q
instances = %d
on_failure = %q
[plugin.config]
[[plugin.config.limit]]
count = "client"
max = 1000000000
per = "1h"
[[plugin.config.limit]]
count = "recipient"
max = 1000000000
per = "1h"
%s`, wasmbuild.ForTest(t, "./plugins/ratelimit"), pluginTimeout, ratelimitInstances, onFailure, routerPlugin(t))
}

// transaction is what one message of a load run was answered.
type transaction struct {
	id   string
	at   time.Time // when the reply that ended it came
	took time.Duration
	step string // the command that ended it: mail, rcpt or data
	code int
	enh  smtp.EnhancedCode
	text string
}

func (x transaction) String() string {
	return fmt.Sprintf("%s at %s: %s %d %d.%d.%d %s", x.id, x.at.Format("15:04:05.000"), x.step, x.code, x.enh[0], x.enh[1], x.enh[2], x.text)
}

// loadRun is several SMTP clients sending through a gateway, each one
// message after another on its own session, until stopped; it records
// every transaction's reply. A command without an SMTP reply (the
// session broke, or no answer within noHang) ends that client with an
// error, which the test reports.
type loadRun struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	txs  []transaction
	errs []error
}

// startLoad starts n clients sending to info@ours.test through addr.
func startLoad(t *testing.T, addr string, n int) *loadRun {
	l := &loadRun{stop: make(chan struct{})}
	for i := range n {
		l.wg.Go(func() { l.client(addr, fmt.Sprintf("c%d", i)) })
	}
	t.Cleanup(l.finish)
	return l
}

// finish stops the clients and waits for them; a second call does nothing.
func (l *loadRun) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *loadRun) client(addr, name string) {
	conn, err := net.DialTimeout("tcp", addr, noHang)
	if err != nil {
		l.fail(fmt.Errorf("%s: %w", name, err))
		return
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	// Past noHang the client stops waiting, and says so.
	c.CommandTimeout, c.SubmissionTimeout = noHang, noHang
	if err := c.Hello("sender.example.org"); err != nil {
		l.fail(fmt.Errorf("%s: EHLO: %w", name, err))
		return
	}
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			c.Quit()
			return
		default:
		}
		x, err := sendTransaction(c, fmt.Sprintf("%s-m%d", name, i))
		if err != nil {
			l.fail(err)
			return
		}
		l.mu.Lock()
		l.txs = append(l.txs, x)
		l.mu.Unlock()
	}
}

func (l *loadRun) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

// sendTransaction sends one message, id in its X-Test-Id field, and returns the
// reply that ended the transaction. A refused transaction is reset, for
// the next. An error is a command that got no SMTP reply.
func sendTransaction(c *smtp.Client, id string) (transaction, error) {
	x := transaction{id: id, step: "mail"}
	start := time.Now()
	err := c.Mail("alice@example.org", nil)
	if err == nil {
		x.step = "rcpt"
		err = c.Rcpt("info@ours.test", nil)
	}
	if err == nil {
		x.step = "data"
		var w *smtp.DataCommand
		if w, err = c.Data(); err == nil {
			io.WriteString(w, "X-Test-Id: "+id+"\r\n"+testMessage)
			var r *smtp.DataResponse
			if r, err = w.CloseWithResponse(); err == nil {
				x.code, x.enh, x.text = 250, smtp.EnhancedCode{2, 0, 0}, strings.TrimPrefix(r.StatusText, "2.0.0 ")
			}
		}
	}
	x.at = time.Now()
	x.took = x.at.Sub(start)
	if err != nil {
		var e *smtp.SMTPError
		if !errors.As(err, &e) {
			return x, fmt.Errorf("%s: %s after %s: no reply: %w", id, x.step, x.took.Round(time.Millisecond), err)
		}
		x.code, x.enh, x.text = e.Code, e.EnhancedCode, e.Message
		if err := c.Reset(); err != nil {
			return x, fmt.Errorf("%s: RSET after %d: %w", id, e.Code, err)
		}
	}
	return x, nil
}

// transactions returns what the clients were answered so far.
func (l *loadRun) transactions() []transaction {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]transaction(nil), l.txs...)
}

// count is how many transactions ended with code after since.
func (l *loadRun) count(code int, since time.Time) int {
	n := 0
	for _, x := range l.transactions() {
		if x.code == code && x.at.After(since) {
			n++
		}
	}
	return n
}

// waitCount waits, up to a generous bound, until n transactions ended with
// code after since.
func (l *loadRun) waitCount(t *testing.T, what string, code, n int, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for l.count(code, since) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited 15s for %s: %d replies %d since %s, want %d", what, l.count(code, since), code, since.Format("15:04:05.000"), n)
		}
		l.mu.Lock()
		errs := len(l.errs)
		l.mu.Unlock()
		if errs > 0 {
			t.Fatalf("waiting for %s, clients failed: %v", what, l.errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check is what holds for every run, whatever the outages: each client
// got an SMTP reply to every command within noHang; every transaction
// ended with 250 or the plugin's failure, 451 4.3.0, at MAIL or RCPT;
// the destination has exactly the messages answered 250, each once. It
// returns the transactions.
func (l *loadRun) check(t *testing.T, e *env) []transaction {
	t.Helper()
	l.finish()
	for _, err := range l.errs {
		t.Errorf("a client got no reply: %v", err)
	}
	txs := l.transactions()
	accepted := map[string]bool{}
	for _, x := range txs {
		switch {
		case x.took > noHang:
			t.Errorf("%v: took %s, over %s", x, x.took, noHang)
		case x.code == 250 && x.step == "data":
			accepted[x.id] = true
		case x.code == 451 && x.enh == (smtp.EnhancedCode{4, 3, 0}) && x.step != "data" &&
			strings.Contains(x.text, "Filter ratelimit failed"):
		default:
			t.Errorf("%v: want 250 at data or 451 4.3.0 from the ratelimit at mail or rcpt", x)
		}
	}
	delivered := map[string]int{}
	for _, d := range e.dest.deliveries() {
		id := headerValue(d.data, "X-Test-Id")
		delivered[id]++
		if !accepted[id] {
			t.Errorf("the destination has %q, which the client was not told 250 for", id)
		}
		if delivered[id] > 1 {
			t.Errorf("the destination has %q %d times", id, delivered[id])
		}
	}
	for id := range accepted {
		if delivered[id] == 0 {
			t.Errorf("%s was answered 250 and is not at the destination", id)
		}
	}
	return txs
}

// clusterSection points the gateway's key-value store at the Redis at
// addr, with kvTimeout for each call and its own key prefix.
func clusterSection(addr, prefix string) string {
	return fmt.Sprintf("[cluster]\nredis = [%q]\nredis_timeout = %q\nredis_key_prefix = %q\n", addr, kvTimeout, prefix)
}

// ratelimitFailures is the ratelimit's failures so far, at every stage.
func ratelimitFailures(t *testing.T, e *env) float64 {
	m := scrape(t, e)
	return m[`sluice_plugin_failures_total{plugin="ratelimit",stage="mail"}`] +
		m[`sluice_plugin_failures_total{plugin="ratelimit",stage="rcpt"}`]
}

// The "Redis down or slow", under load: clients send through a
// gateway whose ratelimit counts in Redis while the test kills Redis,
// starts it again on the same port, then pauses it (SIGSTOP: a Redis that
// takes connections and never answers) and resumes it. Every transaction
// is answered within noHang, 250 or the plugin's failure (451 4.3.0 with
// on_failure = "tempfail", nothing but 250 with "skip"), never a 5xx;
// during each outage the ratelimit fails and on_failure decides; after
// each, mail is counted in Redis again, without restarting the gateway,
// and the failures stop. Every 250 is at the destination, and nothing
// else is; the failures are in the log and in /metrics.
func TestRedisOutageUnderLoad(t *testing.T) {
	for _, onFailure := range []string{"tempfail", "skip"} {
		t.Run(onFailure, func(t *testing.T) {
			t.Parallel()
			r := redistest.Start(t)
			e := startEnv(t, envOptions{plugins: ratelimitUnderLoad(t, onFailure), sections: clusterSection(r.Addr(), "sluice:"),
				smtp: "max_connections_per_ip = 100"})
			load := startLoad(t, e.addr, loadClients)
			load.waitCount(t, "mail to flow", 250, 20, time.Time{})

			// outage waits until the gateway has met the outage that
			// began at since: its failures are answered per on_failure.
			outage := func(what string, since time.Time, failures float64) {
				t.Helper()
				time.Sleep(outageFor)
				if onFailure == "tempfail" {
					load.waitCount(t, "451s with Redis "+what, 451, 5, since)
					return
				}
				waitFor(t, "the ratelimit to fail with Redis "+what, func() bool { return ratelimitFailures(t, e) >= failures+5 })
				load.waitCount(t, "250s with Redis "+what, 250, 5, since)
			}
			// recovered waits until mail is counted in Redis again and
			// the failures have stopped: a round of 20 messages without
			// a new one (a round or two may still see the last failures
			// of calls under way). After a restart Redis has nothing but
			// what was counted since.
			recovered := func(what string, since time.Time) {
				t.Helper()
				load.waitCount(t, "250s after Redis "+what, 250, 1, since)
				t.Logf("Redis %s: first 250 after %s", what, firstAfter(load.transactions(), 250, since).Sub(since).Round(time.Millisecond))
				for round := 0; ; round++ {
					before, n := ratelimitFailures(t, e), load.count(250, time.Time{})
					load.waitCount(t, "20 more 250s after Redis "+what, 250, n+20, time.Time{})
					if ratelimitFailures(t, e) == before {
						break
					}
					if round == 3 {
						t.Fatalf("the ratelimit still fails after Redis %s", what)
					}
				}
				if keys := strings.TrimSpace(r.CLI("dbsize")); keys == "0" {
					t.Fatalf("Redis has no keys after it %s", what)
				}
			}

			stopped, f := time.Now(), ratelimitFailures(t, e)
			r.Stop()
			outage("down", stopped, f)
			started := time.Now()
			r.Start()
			recovered("started again", started)

			paused, f := time.Now(), ratelimitFailures(t, e)
			r.Pause()
			outage("paused", paused, f)
			resumed := time.Now()
			r.Resume()
			recovered("resumed", resumed)

			txs := load.check(t, e)
			n451 := 0
			for _, x := range txs {
				if x.code == 451 {
					n451++
				}
			}
			failures := ratelimitFailures(t, e)
			if onFailure == "tempfail" && failures != float64(n451) {
				t.Errorf("sluice_plugin_failures_total of the ratelimit = %v, want %d, one per 451", failures, n451)
			}
			if onFailure == "skip" && n451 > 0 {
				t.Errorf("%d transactions answered 451 with on_failure = \"skip\"", n451)
			}
			// Killed, Redis refuses connections: errors; paused, it
			// answers nothing: timeouts.
			m := scrape(t, e)
			for _, result := range []string{"error", "timeout"} {
				key := fmt.Sprintf(`sluice_kv_redis_requests_total{op="incr",result=%q}`, result)
				if m[key] == 0 {
					t.Errorf("%s = 0 after the outages", key)
				}
			}
			for _, line := range []string{"key-value store failed", "plugin failed"} {
				if !strings.Contains(e.logs.String(), line) {
					t.Errorf("the log does not say %q", line)
				}
			}
			var slowest transaction
			for _, x := range txs {
				if x.took > slowest.took {
					slowest = x
				}
			}
			t.Logf("%d transactions, %d answered 451, %v failures of the ratelimit; the slowest took %s: %v",
				len(txs), n451, failures, slowest.took.Round(time.Millisecond), slowest)
		})
	}
}

// firstAfter is when the first transaction ending with code after since
// ended.
func firstAfter(txs []transaction, code int, since time.Time) time.Time {
	var first time.Time
	for _, x := range txs {
		if x.code == code && x.at.After(since) && (first.IsZero() || x.at.Before(first)) {
			first = x.at
		}
	}
	return first
}

// A gateway started while its Redis is down starts and serves: the
// ratelimit fails, and its on_failure decides (451 4.3.0 with tempfail,
// delivery with skip). Once Redis is up, the same gateway counts in it,
// without a restart.
func TestRedisDownAtStart(t *testing.T) {
	r := redistest.Start(t)
	r.Stop()
	type node struct {
		onFailure, prefix string
		e                 *env
		c                 *smtp.Client
	}
	var nodes []node
	for _, c := range []struct {
		onFailure string
		code      int // with Redis down
	}{{"tempfail", 451}, {"skip", 250}} {
		n := node{onFailure: c.onFailure, prefix: "sluice-" + c.onFailure + ":"}
		n.e = startEnv(t, envOptions{plugins: ratelimitUnderLoad(t, c.onFailure), sections: clusterSection(r.Addr(), n.prefix)})
		n.c = n.e.client(t)
		n.c.CommandTimeout = noHang
		x, err := sendTransaction(n.c, c.onFailure+"-down")
		if err != nil {
			t.Fatal(err)
		}
		if x.code != c.code {
			t.Errorf("on_failure = %q, Redis down at start: %v, want %d", c.onFailure, x, c.code)
		}
		if f := ratelimitFailures(t, n.e); f == 0 {
			t.Errorf("on_failure = %q: no failure of the ratelimit counted with Redis down", c.onFailure)
		}
		nodes = append(nodes, n)
	}
	r.Start()
	for _, n := range nodes {
		waitFor(t, "the "+n.onFailure+" gateway to count in Redis", func() bool {
			x, err := sendTransaction(n.c, n.onFailure+"-up")
			if err != nil {
				t.Fatal(err)
			}
			return x.code == 250 && strings.Contains(r.CLI("--scan", "--pattern", n.prefix+"*"), n.prefix)
		})
	}
}
