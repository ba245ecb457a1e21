package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

func newHost(t testing.TB) (*Host, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	h, err := NewHost(context.Background(), HostConfig{
		CacheDir: wasmbuild.CacheDirForTest(),
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h, logs
}

func load(t testing.TB, h *Host, s Spec) *Plugin {
	t.Helper()
	p, err := h.Load(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func routerSpec(t testing.TB) Spec {
	return Spec{
		Name: "router",
		Path: wasmbuild.ForTest(t, "./plugins/router"),
		Config: []byte(`
subaddress_separator = "+"
[[rule]]
match = "info@example.test"
action = "forward"
to = "me@inbox.test"
[[rule]]
match = "old@example.test"
action = "reject"
code = 550
enhanced = "5.1.1"
text = "This address is no longer in use"
`),
		Hostname:  "mx.example.test",
		Instances: 1,
	}
}

// scriptedSpec is the scripted test plugin with the given config.
func scriptedSpec(t testing.TB, name, config string) Spec {
	return Spec{
		Name:      name,
		Path:      wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"),
		Config:    []byte(config),
		Instances: 1,
	}
}

func rcpt(addr string) *abi.Request {
	return &abi.Request{Stage: abi.StageRcpt, SessionID: "s1", ClientIP: "127.0.0.1", MailFrom: "a@sender.test", Rcpt: addr}
}

func TestRouterLoadsAndRoutes(t *testing.T) {
	h, _ := newHost(t)
	p := load(t, h, routerSpec(t))
	if p.Stages() != abi.StageSetOf(abi.StageRcpt) {
		t.Errorf("router is called at %s, want rcpt only", stageList(p.Stages()))
	}
	if want := abi.MaySetDestination | abi.MayReject; p.Permissions() != want {
		t.Errorf("router permissions = %b, want %b", p.Permissions(), want)
	}
	c := NewChain(p)

	o := c.Run(context.Background(), rcpt("Info+news@Example.test"), nil)
	if o.Action != abi.Continue || !destinationIs(o, "me@inbox.test") || o.Reply != nil {
		t.Errorf("forward: outcome %+v, want continue to me@inbox.test", o)
	}
	if len(o.Verdicts) != 1 || o.Verdicts[0].Name != "router" || o.Verdicts[0].Err != nil {
		t.Errorf("forward: records %+v, want one clean record for router", o.Verdicts)
	}

	o = c.Run(context.Background(), rcpt("old@example.test"), nil)
	if o.Action != abi.Reject || o.Reply == nil || o.Reply.Code != 550 ||
		o.Reply.EnhancedCode != [3]int{5, 1, 1} || o.Reply.Message != "This address is no longer in use" {
		t.Errorf("reject: outcome %+v reply %+v", o, o.Reply)
	}

	o = c.Run(context.Background(), rcpt("nobody@example.test"), nil)
	if o.Action != abi.Continue || !destinationIs(o, "") {
		t.Errorf("unknown recipient: outcome %+v, want continue without destination", o)
	}

	o = c.Run(context.Background(), &abi.Request{Stage: abi.StageMail, MailFrom: "a@b.test"}, nil)
	if o.Action != abi.Continue || len(o.Verdicts) != 0 {
		t.Errorf("mail stage: outcome %+v, want no plugin called", o)
	}
}

func TestRouterConfigRefused(t *testing.T) {
	h, _ := newHost(t)
	s := routerSpec(t)
	s.Config = []byte("[[rule]]\nmatch = \"a@d.test\"\naction = \"bounce\"\n")
	_, err := h.Load(context.Background(), s)
	want := `plugin router: config refused: rule 1 (match "a@d.test"): action "bounce" is not forward, drop or reject`
	if err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %q", err, want)
	}
}

func TestVersionRefusal(t *testing.T) {
	h, _ := newHost(t)
	cases := map[string]string{
		"abi2":     "was built for ABI version 2; this gateway speaks 1",
		"nomarker": "is not a Sluice plugin (imports no sluice.abi_version_N)",
	}
	for name, want := range cases {
		path := wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/"+name)
		_, err := h.Load(context.Background(), Spec{Name: name, Path: path})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: Load = %v, want an error naming %s and saying %q", name, err, path, want)
		}
	}
}

func TestNotAModule(t *testing.T) {
	h, _ := newHost(t)
	path := filepath.Join(t.TempDir(), "x.wasm")
	os.WriteFile(path, []byte("#!/bin/sh\necho hi\n"), 0o644)
	_, err := h.Load(context.Background(), Spec{Name: "x", Path: path})
	if err == nil || !strings.Contains(err.Error(), "is not a WebAssembly module") {
		t.Errorf("Load of a shell script = %v", err)
	}
	_, err = h.Load(context.Background(), Spec{Name: "x", Path: filepath.Join(t.TempDir(), "missing.wasm")})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want a not-exist error", err)
	}
}

func TestStageMismatch(t *testing.T) {
	h, _ := newHost(t)
	s := routerSpec(t)
	s.Stages = []abi.Stage{abi.StageRcpt, abi.StageData}
	_, err := h.Load(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "the plugin does not handle data (it declares rcpt)") {
		t.Errorf("Load with stage data = %v", err)
	}
	s.Stages = []abi.Stage{abi.StageRcpt}
	if p := load(t, h, s); p.Stages() != abi.StageSetOf(abi.StageRcpt) {
		t.Errorf("stages = %s", stageList(p.Stages()))
	}
}

func TestSubscribedStagesOnly(t *testing.T) {
	h, _ := newHost(t)
	s := scriptedSpec(t, "only-mail", `verdict = "reject"`+"\npermit = [\"reject\"]")
	s.Stages = []abi.Stage{abi.StageMail}
	c := NewChain(load(t, h, s))
	if o := c.Run(context.Background(), rcpt("a@b.test"), nil); o.Action != abi.Continue || len(o.Verdicts) != 0 {
		t.Errorf("rcpt with a mail-only plugin: %+v, want no call", o)
	}
	if o := c.Run(context.Background(), &abi.Request{Stage: abi.StageMail}, nil); o.Action != abi.Reject {
		t.Errorf("mail: %+v, want reject", o)
	}
}

func TestMemoryLimit(t *testing.T) {
	h, _ := newHost(t)
	s := routerSpec(t)
	s.MemoryLimit = 1 << 20
	_, err := h.Load(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "memory_limit of 1 MiB (16 pages) is below what") ||
		!strings.Contains(err.Error(), "over limit of 16 pages") {
		t.Errorf("Load with 1 MiB = %v", err)
	}
	s.MemoryLimit = 100 << 10
	_, err = h.Load(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "memory_limit of 64 KiB (1 pages) is below what") {
		t.Errorf("Load with 100 KiB = %v", err)
	}
	s.MemoryLimit = 100
	_, err = h.Load(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "less than one 64 KiB page") {
		t.Errorf("Load with 100 bytes = %v", err)
	}
}

// calls returns how many requests the scripted plugin's instance has seen,
// including this one: 1 means a fresh instance.
func calls(t *testing.T, c *Chain) float64 {
	t.Helper()
	o := c.Run(context.Background(), rcpt("count@x.test"), nil)
	if len(o.Findings) != 1 || o.Findings[0].Symbol != "calls" {
		t.Fatalf("count: outcome %+v", o)
	}
	return o.Findings[0].Score
}

// failures are the ways a plugin can fail, by the recipient that makes the
// scripted plugin fail that way, and what the error says.
var failures = []struct{ rcpt, want string }{
	{"loop@x.test", "timed out after 300ms"},
	{"sleep@x.test", "timed out after 300ms"},
	{"fatal@x.test", "trapped"},
	{"exit@x.test", "trapped"},
	{"panic@x.test", "panicked at rcpt: scripted panic"},
	{"badcode@x.test", "bad output: reply code 250 is not 4xx or 5xx"},
	{"inject@x.test", "bad output: header X-Test: value has control characters"},
}

func TestFailureTempfail(t *testing.T) {
	h, logs := newHost(t)
	s := scriptedSpec(t, "scripted", `permit = ["reject", "add_headers"]`)
	s.Timeout = 300 * time.Millisecond
	s.MemoryLimit = 32 << 20
	c := NewChain(load(t, h, s))
	for _, f := range failures {
		calls(t, c)
		if n := calls(t, c); n < 2 {
			t.Fatalf("before %s: the instance has seen %v calls, want it kept between calls", f.rcpt, n)
		}
		o := c.Run(context.Background(), rcpt(f.rcpt), nil)
		if o.Action != abi.Tempfail || o.Reply == nil || o.Reply.Code != 451 || o.Reply.EnhancedCode != [3]int{4, 3, 0} ||
			o.Reply.Message != "Filter scripted failed, try again later" {
			t.Errorf("%s: outcome %+v reply %+v, want 451 4.3.0 Filter scripted failed", f.rcpt, o, o.Reply)
		}
		if len(o.Verdicts) != 1 || o.Verdicts[0].Err == nil || !strings.Contains(o.Verdicts[0].Err.Error(), f.want) {
			t.Errorf("%s: records %+v, want an error containing %q", f.rcpt, o.Verdicts, f.want)
		}
		if n := calls(t, c); n != 1 {
			t.Errorf("after %s: the instance has seen %v calls, want a fresh instance (1)", f.rcpt, n)
		}
	}
	if got := logs.String(); !strings.Contains(got, "plugin failed") || !strings.Contains(got, "plugin=scripted") ||
		!strings.Contains(got, "stage=rcpt") {
		t.Errorf("failures were not logged with the plugin's name:\n%s", got)
	}
}

func TestOutOfMemory(t *testing.T) {
	h, _ := newHost(t)
	s := scriptedSpec(t, "scripted", "")
	s.Timeout = 20 * time.Second // generous: only the memory limit should stop it
	s.MemoryLimit = 32 << 20
	c := NewChain(load(t, h, s))
	o := c.Run(context.Background(), rcpt("oom@x.test"), nil)
	if o.Action != abi.Tempfail || o.Verdicts[0].Err == nil || !strings.Contains(o.Verdicts[0].Err.Error(), "out of memory") {
		t.Errorf("oom: %+v, want a failure saying out of memory", o)
	}
	if n := calls(t, c); n != 1 {
		t.Errorf("after running out of memory the instance has seen %v calls, want a fresh one", n)
	}
}

func TestFailureSkip(t *testing.T) {
	h, _ := newHost(t)
	s := scriptedSpec(t, "scripted", `verdict = "continue"`)
	s.Timeout = 300 * time.Millisecond
	s.OnFailure = Skip
	c := NewChain(load(t, h, s), load(t, h, routerSpec(t)))
	for _, f := range failures[:3] {
		o := c.Run(context.Background(), rcpt(f.rcpt), nil)
		if o.Action != abi.Continue || o.Reply != nil || len(o.Verdicts) != 2 {
			t.Fatalf("%s with skip: outcome %+v, want continue through both plugins", f.rcpt, o)
		}
		if r := o.Verdicts[0]; r.Err == nil || r.Action != abi.Continue {
			t.Errorf("%s with skip: record %+v, want the failure recorded as continue", f.rcpt, r)
		}
		o = c.Run(context.Background(), rcpt("info@example.test"), nil)
		if !destinationIs(o, "me@inbox.test") || o.Verdicts[0].Err != nil {
			t.Errorf("after %s: outcome %+v, want the chain working again", f.rcpt, o)
		}
	}
}

func TestRawOutputFailures(t *testing.T) {
	h, _ := newHost(t)
	c := NewChain(load(t, h, Spec{
		Name: "raw", Path: wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/raw"), Instances: 1,
	}))
	cases := map[string]string{
		"garbage@x.test":   "the answer is not a Verdict",
		"badaction@x.test": "the answer is not a Verdict",
		"outside@x.test":   "is outside its memory",
		"huge@x.test":      "over the limit",
	}
	for addr, want := range cases {
		o := c.Run(context.Background(), rcpt(addr), nil)
		if o.Action != abi.Tempfail || len(o.Verdicts) != 1 || o.Verdicts[0].Err == nil ||
			!strings.Contains(o.Verdicts[0].Err.Error(), want) {
			t.Errorf("%s: outcome %+v, want a failure saying %q", addr, o, want)
		}
		if o := c.Run(context.Background(), rcpt("fine@x.test"), nil); o.Action != abi.Accept {
			t.Errorf("after %s: outcome %+v, want accept", addr, o)
		}
	}
}

// A panic is a failure of the plugin, logged as a panic with the session,
// even when the plugin may tempfail (which is how the SDK answers a host
// that predates the verdict's failure field), and its on_failure applies.
func TestPanicIsFailure(t *testing.T) {
	h, logs := newHost(t)
	for _, policy := range []FailurePolicy{Tempfail, Skip} {
		s := scriptedSpec(t, "scripted", `permit = ["tempfail"]`)
		s.OnFailure = policy
		c := NewChain(load(t, h, s))
		o := c.Run(context.Background(), rcpt("panic@x.test"), nil)
		if len(o.Verdicts) != 1 || o.Verdicts[0].Err == nil || o.Verdicts[0].Err.Error() != "panicked at rcpt: scripted panic" {
			t.Fatalf("%s: outcome %+v, want a failure saying the plugin panicked", policy, o)
		}
		if want := map[FailurePolicy]abi.Action{Tempfail: abi.Tempfail, Skip: abi.Continue}[policy]; o.Action != want {
			t.Errorf("%s: action %v, want %v", policy, o.Action, want)
		}
		if policy == Tempfail && o.Reply.Message != "Filter scripted failed, try again later" {
			t.Errorf("reply %+v, want the failure reply", o.Reply)
		}
		if n := calls(t, c); n != 1 {
			t.Errorf("%s: after a panic the instance has seen %v calls, want a fresh one", policy, n)
		}
	}
	if !strings.Contains(logs.String(), `msg="plugin failed" plugin=scripted stage=rcpt session=s1 on_failure=tempfail error="panicked at rcpt: scripted panic"`) {
		t.Errorf("no log line saying the plugin panicked:\n%s", logs)
	}
}

func TestLog(t *testing.T) {
	h, logs := newHost(t)
	c := NewChain(load(t, h, scriptedSpec(t, "talker", "")))
	c.Run(context.Background(), rcpt("log@x.test"), nil)
	c.Run(context.Background(), rcpt("biglog@x.test"), nil)
	got := logs.String()
	if !strings.Contains(got, `level=INFO msg="hello from log@x.test" plugin=talker`) {
		t.Errorf("log line missing or untagged:\n%s", got)
	}
	cut := fmt.Sprintf("msg=\"%s… (cut)\"", strings.Repeat("x", maxLogMessage))
	if !strings.Contains(got, cut) {
		t.Errorf("a long message was not cut at %d bytes", maxLogMessage)
	}
}

// A log call whose region runs past the guest's memory is refused, as
// every host function refuses such a region: it must not log the memory
// the region does cover.
func TestLogPastMemory(t *testing.T) {
	h, logs := newHost(t)
	c := NewChain(load(t, h, Spec{
		Name: "raw", Path: wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/raw"), Instances: 1,
	}))
	if o := c.Run(context.Background(), rcpt("logpast@x.test"), nil); o.Action != abi.Accept {
		t.Errorf("outcome %+v, want the plugin's accept", o)
	}
	got := logs.String()
	if !strings.Contains(got, `level=WARN msg="plugin logged from outside its memory" plugin=raw`) ||
		!strings.Contains(got, "len=2147483648") {
		t.Errorf("no warning about the region:\n%s", got)
	}
	if strings.Contains(got, "(cut)") {
		t.Errorf("memory was logged:\n%.300s", got)
	}
}

func TestConfigRefusedBySDKPlugin(t *testing.T) {
	h, _ := newHost(t)
	_, err := h.Load(context.Background(), scriptedSpec(t, "s", `refuse = "no way"`))
	if err == nil || err.Error() != "plugin s: config refused: no way" {
		t.Errorf("Load = %v", err)
	}
	_, err = h.Load(context.Background(), scriptedSpec(t, "s", `verdikt = "accept"`))
	if err == nil || !strings.Contains(err.Error(), "unknown setting verdikt") {
		t.Errorf("Load with a typo = %v", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	h, _ := newHost(t)
	s := routerSpec(t)
	s.Instances = 2
	c := NewChain(load(t, h, s))
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 40 {
				addr, want := "info+"+fmt.Sprint(g, "-", i)+"@example.test", "me@inbox.test"
				if i%3 == 0 {
					addr, want = "nobody@example.test", ""
				}
				if o := c.Run(context.Background(), rcpt(addr), nil); !destinationIs(o, want) || o.Verdicts[0].Err != nil {
					errs <- fmt.Sprintf("%s: %+v", addr, o)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestWaitForInstanceHonoursContext(t *testing.T) {
	h, _ := newHost(t)
	s := scriptedSpec(t, "slow", "")
	s.Timeout = 5 * time.Second
	c := NewChain(load(t, h, s))
	started := make(chan struct{})
	done := make(chan Outcome)
	go func() {
		close(started)
		done <- c.Run(context.Background(), rcpt("loop@x.test"), nil)
	}()
	<-started
	// The only instance is busy looping (or about to be): a caller whose
	// context ends first gets a failure instead of waiting out the loop.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o := c.Run(ctx, rcpt("count@x.test"), nil); o.Action != abi.Tempfail || o.Verdicts[0].Err == nil {
		t.Errorf("with a cancelled context: %+v, want a failure", o)
	}
	if o := <-done; o.Action != abi.Tempfail || !strings.Contains(o.Verdicts[0].Err.Error(), "timed out") {
		t.Errorf("loop: %+v, want a timeout", o)
	}
}

func TestClose(t *testing.T) {
	h, _ := newHost(t)
	p := load(t, h, routerSpec(t))
	c := NewChain(p)
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	o := c.Run(context.Background(), rcpt("info@example.test"), nil)
	if o.Action != abi.Tempfail || !errors.Is(o.Verdicts[0].Err, errClosed) {
		t.Errorf("after Close: %+v, want a tempfail saying the plugin is closed", o)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A module that would make wazero allocate without bound (here a body
// declaring 4 billion locals: "fatal error: out of memory", which no
// recover can catch) is refused at load, before the compiler sees it, so a
// bad file given to a reload cannot take the gateway down.
func TestLoadRefusesModulesThatWouldCrashTheCompiler(t *testing.T) {
	mod := []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 4, 1, 0x60, 0, 0, // type section: () -> ()
		3, 2, 1, 0, // function section: one function of type 0
		10, 9, 1, 7, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, // code: 4294967295 locals of i32
	}
	path := filepath.Join(t.TempDir(), "bomb.wasm")
	if err := os.WriteFile(path, mod, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(context.Background(), HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	_, err = h.Load(context.Background(), Spec{Name: "bomb", Path: path})
	if err == nil || !strings.Contains(err.Error(), "locals") {
		t.Fatalf("Load = %v, want a refusal naming the locals", err)
	}
}

// A call waits for a free instance no longer than the plugin's timeout:
// when every instance is held by calls that take their whole timeout (a
// plugin whose key-value store hangs), callers beyond the pool fail at
// the timeout and on_failure decides, rather than queueing for as many
// timeouts as there are callers ahead of them. Each call ends within
// about twice the timeout (its wait, then its own call), however many
// callers there are: the bound below is that with room for a slow
// machine, far under what twenty callers queueing behind one instance
// would take.
func TestWaitForAnInstanceIsBounded(t *testing.T) {
	h, _ := newHost(t)
	s := scriptedSpec(t, "scripted", "")
	s.Timeout = 100 * time.Millisecond
	c := NewChain(load(t, h, s))
	const callers = 20
	bound := 2*s.Timeout + 500*time.Millisecond
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		waited int
	)
	for range callers {
		wg.Go(func() {
			start := time.Now()
			o := c.Run(context.Background(), rcpt("sleep@x.test"), nil)
			took := time.Since(start)
			if took > bound {
				t.Errorf("a call took %s, over %s", took.Round(time.Millisecond), bound)
			}
			if o.Action != abi.Tempfail || len(o.Verdicts) != 1 || o.Verdicts[0].Err == nil {
				t.Errorf("outcome %+v, want the plugin's failure", o)
				return
			}
			if strings.Contains(o.Verdicts[0].Err.Error(), "over its timeout of 100ms: all 1 busy, and its calls failing") {
				mu.Lock()
				waited++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if waited == 0 {
		t.Error("no call failed for want of a free instance")
	}
}

// A plugin that is slow but answers is queued for, however long the
// queue: twenty callers of one instance whose calls take 30ms wait up to
// 600ms, over the timeout of 100ms, and every call gets the plugin's
// verdict, none a failure for want of an instance (a load spike is no
// failure of the plugin's). Only a plugin whose calls fail sheds the
// callers that waited longer than its timeout (the test above).
func TestSlowPluginIsQueuedFor(t *testing.T) {
	h, _ := newHost(t)
	s := scriptedSpec(t, "scripted", "")
	s.Timeout, s.Instances = 100*time.Millisecond, 1
	c := NewChain(load(t, h, s))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			o := c.Run(context.Background(), rcpt("slow@x.test"), nil)
			if o.Action != abi.Continue || len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil {
				t.Errorf("outcome %+v, want the plugin's continue", o)
			}
		})
	}
	wg.Wait()
}

// A caller that gives up while it waits for a free instance (its context
// cancelled: the gateway shutting down) stops waiting at once, and its
// failure says so.
func TestWaitForAnInstanceEndsWithItsContext(t *testing.T) {
	h, _ := newHost(t)
	s := scriptedSpec(t, "scripted", "")
	s.Timeout, s.Instances = 2*time.Second, 1
	c := NewChain(load(t, h, s))
	held := make(chan struct{})
	go func() {
		defer close(held)
		c.Run(context.Background(), rcpt("sleep@x.test"), nil) // holds the only instance for its timeout
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	o := c.Run(ctx, rcpt("info@x.test"), nil)
	select {
	case <-held:
		t.Error("the waiting call ended only after the call holding the instance")
	default:
	}
	if len(o.Verdicts) != 1 || o.Verdicts[0].Err == nil || !strings.Contains(o.Verdicts[0].Err.Error(), "waiting for a free instance: context canceled") {
		t.Errorf("outcome %+v, want a failure waiting for a free instance", o)
	}
	<-held
}
