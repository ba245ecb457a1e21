package plugin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/tetratelabs/wazero/api"
)

// runaway runs a call of the scripted plugin that never returns on its
// own, and returns the outcome and how long past its deadline it came
// back. The bound is generous: the machine is shared; the figure is
// logged.
func runaway(t *testing.T, c *Chain, rcptTo string, timeout time.Duration) (Outcome, time.Duration) {
	t.Helper()
	done := make(chan Outcome, 1)
	start := time.Now()
	go func() { done <- c.Run(context.Background(), rcpt(rcptTo), nil) }()
	select {
	case o := <-done:
		return o, time.Since(start) - timeout
	case <-time.After(timeout + 30*time.Second):
		t.Fatalf("%s: the call did not return", rcptTo)
		return Outcome{}, 0
	}
}

// Each deadline mechanism stops a runaway loop and a runaway sleep, and
// says so. The gateway's is the interrupt; CCD is kept for benchmarks.
func TestDeadlineStopsRunaways(t *testing.T) {
	h, _ := newHost(t)
	for _, m := range []struct {
		name string
		mode deadlineMode
	}{{"interrupt", deadlineInterrupt}, {"ccd", deadlineCCD}} {
		s := scriptedSpec(t, "scripted", "")
		s.Timeout = 100 * time.Millisecond
		s.deadline = m.mode
		c := NewChain(load(t, h, s))
		for _, addr := range []string{"loop@x.test", "sleep@x.test"} {
			o, late := runaway(t, c, addr, s.Timeout)
			if len(o.Verdicts) != 1 || o.Verdicts[0].Err == nil || !strings.Contains(o.Verdicts[0].Err.Error(), "timed out after 100ms") {
				t.Errorf("%s, %s: %+v, want a timeout", m.name, addr, o)
			}
			t.Logf("%s, %s: returned %v after the deadline", m.name, addr, late)
		}
		if n := calls(t, c); n != 1 {
			t.Errorf("%s: after the timeouts the instance has seen %v calls, want a fresh one", m.name, n)
		}
	}
}

// A garbage collection while a plugin loops must not wait for the plugin:
// it would hold up the whole gateway, and the timer that is to stop the
// plugin with it. The instrumented module yields to Go regularly.
func TestGarbageCollectionDuringRunawayPlugin(t *testing.T) {
	h, _ := newHost(t)
	s := scriptedSpec(t, "scripted", "")
	s.Timeout = 300 * time.Millisecond
	c := NewChain(load(t, h, s))
	stop := make(chan struct{})
	collected := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				collected <- n
				return
			default:
				runtime.GC()
				n++
			}
		}
	}()
	o, _ := runaway(t, c, "loop@x.test", s.Timeout)
	close(stop)
	if n := <-collected; n < 2 {
		t.Errorf("%d collections ran while the plugin looped, want several", n)
	}
	if o.Verdicts[0].Err == nil || !strings.Contains(o.Verdicts[0].Err.Error(), "timed out") {
		t.Errorf("loop: %+v, want a timeout", o)
	}
}

// A plugin whose initialisation never ends is refused at load, within
// the start timeout.
func TestStartTimeout(t *testing.T) {
	h, _ := newHost(t)
	s := Spec{Name: "initloop", Path: wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/initloop"), startTimeout: 200 * time.Millisecond}
	_, err := h.Load(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "plugin initloop: starting an instance: _initialize timed out after 200ms") {
		t.Errorf("Load = %v, want a timeout in _initialize", err)
	}
}

// startLoop is a plugin in WebAssembly text whose start function never
// returns. Instantiating it would hang; the instrumented module exports
// the start function instead, and the host runs it under the deadline.
const startLoop = `(module
  (import "sluice" "abi_version_1" (func))
  (memory (export "memory") 1)
  (func (export "sluice_buffer") (param i32) (result i32) (i32.const 0))
  (func (export "sluice_configure") (param i32) (result i64) (i64.const 0))
  (func (export "sluice_handle") (param i32) (result i64) (i64.const 0))
  (func $forever (loop $l (br $l)))
  (start $forever))`

func TestStartFunctionTimeout(t *testing.T) {
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Fatal("wat2wasm not found: install Debian package wabt")
	}
	dir := t.TempDir()
	src, path := filepath.Join(dir, "startloop.wat"), filepath.Join(dir, "startloop.wasm")
	if err := os.WriteFile(src, []byte(startLoop), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(wat2wasm, "-o", path, src).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, out)
	}
	h, _ := newHost(t)
	_, err = h.Load(context.Background(), Spec{Name: "startloop", Path: path, startTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "plugin startloop: starting an instance: sluice_start timed out after 200ms") {
		t.Errorf("Load = %v, want a timeout in the start function", err)
	}
}

// A timer that fires just as a call ends leaves the flag set; the next
// call must not trap for it.
func TestLateTimerDoesNotStopNextCall(t *testing.T) {
	h, _ := newHost(t)
	p := load(t, h, routerSpec(t))
	inst, err := p.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.close(context.Background())
	// The "call" outlasts its deadline on the host's side, so the timer
	// fires, but it succeeds.
	err = inst.guard(context.Background(), time.Millisecond, func(context.Context) error {
		time.Sleep(50 * time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatalf("guard = %v, want the call's own nil", err)
	}
	if got := inst.flag.(api.Global).Get(); got != 1 {
		t.Fatalf("flag = %d after the timer fired, want 1", got)
	}
	v, err := p.decide(context.Background(), inst, rcpt("info@example.test"))
	if err != nil || v.Destination != "me@inbox.test" {
		t.Errorf("the next call: %+v, %v; want it routed", v, err)
	}
}
