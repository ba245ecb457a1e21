package gateway_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// pluginFailures are the ways a plugin fails, by the recipient that makes
// one of the test plugins fail that way (each in a session of its own, in
// parallel, so that the two that wait for the timeout wait together): scripted (built with the SDK)
// loops, sleeps, runs out of memory, traps, exits, panics or answers
// what it may not; raw (written against the ABI alone) answers bytes
// that are no verdict.
var pluginFailures = []struct{ rcpt, plugin, logged string }{
	{"loop@ours.test", "scripted", "timed out"},
	{"sleep@ours.test", "scripted", "timed out"},
	{"oom@ours.test", "scripted", "out of memory"},
	{"fatal@ours.test", "scripted", "trapped"},
	{"exit@ours.test", "scripted", "trapped"},
	{"panic@ours.test", "scripted", "panicked at rcpt: scripted panic"},
	{"badcode@ours.test", "scripted", "reply code 250 is not 4xx or 5xx"},
	{"inject@ours.test", "scripted", "control characters"},
	{"garbage@ours.test", "raw", "not a Verdict"},
	{"badaction@ours.test", "raw", "not a Verdict"},
	{"outside@ours.test", "raw", "outside its memory"},
	{"huge@ours.test", "raw", "over the limit"},
}

// failingChain is a router that forwards all of ours.test to
// me@dest.test, then the two misbehaving plugins with onFailure.
func failingChain(t *testing.T, onFailure string) string {
	return fmt.Sprintf(`
[[plugin]]
name = "router"
path = %q
stages = ["rcpt"]
[plugin.config]
[[plugin.config.rule]]
match = "*@ours.test"
action = "forward"
to = "me@dest.test"
[[plugin]]
name = "scripted"
path = %q
stages = ["rcpt"]
timeout = "2s"
memory_limit = "16MiB"
instances = 4
on_failure = %q
[plugin.config]
permit = ["reject", "add_headers"]
[[plugin]]
name = "raw"
path = %q
instances = 4
on_failure = %q
`, wasmbuild.ForTest(t, "./plugins/router"), wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"), onFailure,
		wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/raw"), onFailure)
}

// Through SMTP, every kind of plugin failure follows the plugin's
// on_failure: with tempfail the recipient is deferred with 451 4.3.0 and
// nothing is delivered for it; the gateway goes on serving, with a fresh
// instance of the plugin, and the failure is logged and counted.
func TestPluginFailuresTempfail(t *testing.T) {
	e := startEnv(t, envOptions{plugins: failingChain(t, "tempfail")})
	t.Run("each", func(t *testing.T) {
		for _, f := range pluginFailures {
			t.Run(f.rcpt, func(t *testing.T) {
				t.Parallel()
				c := e.client(t)
				if err := c.Mail("alice@example.org", nil); err != nil {
					t.Fatal(err)
				}
				wantReply(t, f.rcpt, c.Rcpt(f.rcpt, nil), 451, smtp.EnhancedCode{4, 3, 0}, "Filter "+f.plugin+" failed, try again later")
				// The same session, the same plugins: the next recipient passes.
				if err := c.Rcpt("info@ours.test", nil); err != nil {
					t.Fatalf("after %s: %v", f.rcpt, err)
				}
				if _, err := sendData(t, c, testMessage); err != nil {
					t.Fatalf("after %s: %v", f.rcpt, err)
				}
				c.Quit()
			})
		}
	})
	got := e.dest.deliveries()
	if len(got) != len(pluginFailures) {
		t.Fatalf("the destination has %d messages, want %d", len(got), len(pluginFailures))
	}
	for _, d := range got {
		if len(d.to) != 1 || d.to[0] != "me@dest.test" {
			t.Errorf("delivered to %v, want the good recipient only", d.to)
		}
	}
	checkFailuresLogged(t, e)
}

// With skip, a failing plugin is passed over: the recipient is accepted
// on the router's word and the message delivered.
func TestPluginFailuresSkip(t *testing.T) {
	e := startEnv(t, envOptions{plugins: failingChain(t, "skip")})
	t.Run("each", func(t *testing.T) {
		for _, f := range pluginFailures {
			t.Run(f.rcpt, func(t *testing.T) {
				t.Parallel()
				if err := e.send(t, "alice@example.org", f.rcpt, testMessage); err != nil {
					t.Errorf("%s with skip: %v, want the message delivered", f.rcpt, err)
				}
			})
		}
	})
	if n := len(e.dest.deliveries()); n != len(pluginFailures) {
		t.Errorf("the destination has %d messages, want %d", n, len(pluginFailures))
	}
	checkFailuresLogged(t, e)
}

func checkFailuresLogged(t *testing.T, e *env) {
	t.Helper()
	logs := e.logs.String()
	counts := map[string]int{}
	for _, f := range pluginFailures {
		counts[f.plugin]++
		if !strings.Contains(logs, f.logged) {
			t.Errorf("the log does not say %q for %s", f.logged, f.rcpt)
		}
	}
	m := scrape(t, e)
	for plugin, n := range counts {
		key := fmt.Sprintf(`sluice_plugin_failures_total{plugin=%q,stage="rcpt"}`, plugin)
		if m[key] != float64(n) {
			t.Errorf("%s = %v, want %d", key, m[key], n)
		}
	}
}

// A plugin swapped mid-load for one that fails every call: sessions on
// the new chain follow its on_failure (451 4.3.0), sessions go on being
// served, and swapping back restores delivery. No reply is anything else.
func TestSwapToAFailingPluginUnderLoad(t *testing.T) {
	e, _ := swapEnv(t, `watch_interval = "1h"`)
	scripted := fmt.Sprintf(`
[[plugin]]
name = "tagger"
path = %q
stages = ["rcpt"]
timeout = "200ms"
instances = 2
[plugin.config]
permit = ["destination"]
destination = "me@dest.test"
`, wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"))
	original := e.cfgText
	failing := strings.Replace(original, swapPluginTable(t, e), scripted, 1)

	var (
		mu       sync.Mutex
		outcomes = map[string]int{}
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	record := func(what string) {
		mu.Lock()
		outcomes[what]++
		mu.Unlock()
	}
	count := func(what string) int {
		mu.Lock()
		defer mu.Unlock()
		return outcomes[what]
	}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				record(sendLoopRecipient(e.addr))
			}
		})
	}
	waitFor(t, "mail to flow", func() bool { return count("250") >= 10 })
	os.WriteFile(e.cfgPath, []byte(failing), 0o644)
	if code, a := postReload(t, e); code != 200 || !a.OK {
		t.Fatalf("swap to the failing plugin: %d %+v", code, a)
	}
	waitFor(t, "the failing plugin to answer", func() bool { return count("451 4.3.0") >= 10 })
	os.WriteFile(e.cfgPath, []byte(original), 0o644)
	if code, a := postReload(t, e); code != 200 || !a.OK {
		t.Fatalf("swap back: %d %+v", code, a)
	}
	delivered := count("250")
	waitFor(t, "delivery after the swap back", func() bool { return count("250") >= delivered+10 })
	close(stop)
	wg.Wait()

	for what, n := range outcomes {
		if what != "250" && what != "451 4.3.0" {
			t.Errorf("%d sessions ended with %q", n, what)
		}
	}
	if got := len(e.dest.deliveries()); got != count("250") {
		t.Errorf("the destination has %d messages, the clients were told 250 for %d", got, count("250"))
	}
	t.Logf("outcomes: %v", outcomes)
}

// swapPluginTable is the tagger's [[plugin]] table in swapEnv's
// configuration.
func swapPluginTable(t *testing.T, e *env) string {
	t.Helper()
	i := strings.Index(e.cfgText, "[[plugin]]")
	if i < 0 {
		t.Fatal("no [[plugin]] in the configuration")
	}
	return e.cfgText[i:]
}

// sendLoopRecipient sends one message to loop@ours.test, which the
// scripted plugin loops on, and says how it ended: "250", the code and
// enhanced code of a refusal, or the error.
func sendLoopRecipient(addr string) string {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	err = func() error {
		if err := c.Hello("sender.example.org"); err != nil {
			return err
		}
		if err := c.Mail("alice@example.org", nil); err != nil {
			return err
		}
		if err := c.Rcpt("loop@ours.test", nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		w.Write([]byte(testMessage))
		return w.Close()
	}()
	var se *smtp.SMTPError
	switch {
	case err == nil:
		c.Quit()
		return "250"
	case errors.As(err, &se):
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return err.Error()
}
