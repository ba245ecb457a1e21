package plugin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// watPlugin builds a plugin written in WebAssembly text: it declares the
// rcpt stage and nothing else, and funcs, which must define $handle, say
// what it does at a call.
func watPlugin(t testing.TB, funcs string) string {
	t.Helper()
	var data strings.Builder
	for _, c := range abi.AppendConfigureResponse(nil, &abi.ConfigureResponse{Stages: abi.StageSetOf(abi.StageRcpt)}) {
		fmt.Fprintf(&data, `\%02x`, c)
	}
	n := len(data.String()) / 3
	src := `(module
  (import "sluice" "abi_version_1" (func))
  (memory (export "memory") 1)
  (data (i32.const 0) "` + data.String() + `")
  (func (export "sluice_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "sluice_configure") (param i32) (result i64) (i64.const ` + strconv.Itoa(n) + `))
  (func (export "sluice_handle") (param i32) (result i64) (call $handle))
  ` + funcs + `)`
	dir := t.TempDir()
	in, out := filepath.Join(dir, "p.wat"), filepath.Join(dir, "p.wasm")
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Fatal("wat2wasm not found: install Debian package wabt")
	}
	if b, err := exec.Command(wat2wasm, "-o", out, in).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	return out
}

// Plugins that fail for want of memory, each in its own way.
const (
	// recursion calls itself for ever.
	recursion = `(func $handle (result i64) (drop (call $rec (i32.const 0))) (i64.const 0))
  (func $rec (param i32) (result i32) (call $rec (i32.add (local.get 0) (i32.const 1))))`
	// memoryGrowth grows its memory a page at a time, touching each, until
	// it cannot, and then traps.
	memoryGrowth = `(func $handle (result i64) (local $page i32)
    (loop $grow
      (local.set $page (memory.grow (i32.const 1)))
      (if (i32.eq (local.get $page) (i32.const -1)) (then unreachable))
      (i32.store (i32.mul (local.get $page) (i32.const 65536)) (i32.const 1))
      (br $grow))
    (i64.const 0))`
)

// A plugin that recurses without end fails with a clear error at the
// call depth limit, and its on_failure applies.
func TestCallDepthLimit(t *testing.T) {
	h, logs := newHost(t)
	path := watPlugin(t, recursion)
	for _, policy := range []FailurePolicy{Tempfail, Skip} {
		c := NewChain(load(t, h, Spec{Name: "deep", Path: path, Instances: 1, OnFailure: policy}))
		o := c.Run(context.Background(), rcpt("a@x.test"), nil)
		if len(o.Verdicts) != 1 || o.Verdicts[0].Err == nil ||
			!strings.Contains(o.Verdicts[0].Err.Error(), "call depth limit exceeded") {
			t.Fatalf("%s: outcome %+v, want a failure at the call depth limit", policy, o)
		}
		want := abi.Tempfail
		if policy == Skip {
			want = abi.Continue
		}
		if o.Action != want {
			t.Errorf("%s: action %v, want %v", policy, o.Action, want)
		}
	}
	if !strings.Contains(logs.String(), `error="call depth limit exceeded`) {
		t.Errorf("the log does not say why:\n%s", logs)
	}
}

// A Go plugin that compiles a regular expression with a counted repeat
// when it is configured fails to load with the default stack_limit (Go's
// regexp compiler recurses once per repetition, each frame some 450 KB by
// the estimate), with an error naming the setting, and loads and answers
// with a larger one. Both loads share one host: the compilation cache must
// keep the two budgets apart, whichever is compiled first.
func TestStackLimitSetting(t *testing.T) {
	h, _ := newHost(t)
	// A DNS label, as a router's users write it.
	spec := scriptedSpec(t, "labels", `pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"`)
	large := spec
	large.StackLimit = 64 << 20
	c := NewChain(load(t, h, large))
	if o := c.Run(context.Background(), rcpt("a@x.test"), nil); o.Action != abi.Continue || o.Verdicts[0].Err != nil {
		t.Errorf("with stack_limit 64 MiB: outcome %+v, want continue", o)
	}
	_, err := h.Load(context.Background(), spec)
	want := "call depth limit exceeded: its calls would take more than its stack_limit of 4 MiB; raise stack_limit if the plugin needs it"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("with the default stack_limit: %v, want a failure saying %q", err, want)
	}
	spec.StackLimit = 6 << 20
	if _, err := h.Load(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "stack_limit of 6291456 bytes: must be a power of two") {
		t.Errorf("with stack_limit 6 MiB: %v, want it refused", err)
	}
}

// rss is the process's resident memory in bytes.
func rss(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// A plugin that fails for want of memory, 1,000 times, never takes the
// gateway (this test process) past its bound: per instance, the memory
// limit and the stack bound. The resident memory is sampled after every
// call; what the runtime keeps of its heap is given back before the
// baseline and the idle figure, as the Go runtime does on its own in time.
func TestMemoryContainment(t *testing.T) {
	if testing.Short() {
		t.Skip("runs plugins 3,000 times")
	}
	h, _ := newHost(t)
	cases := []struct {
		name  string
		spec  Spec
		error string
	}{
		{"recursion", Spec{Path: watPlugin(t, recursion)}, "call depth limit exceeded"},
		// The stack bound grows with stack_limit; with one page of
		// memory, the bound is almost all stack.
		{"recursion, stack_limit 32MiB", Spec{Path: watPlugin(t, recursion), StackLimit: 32 << 20, MemoryLimit: 64 << 10},
			"call depth limit exceeded"},
		{"memory.grow", Spec{Path: watPlugin(t, memoryGrowth)}, "trapped"},
		// A Go plugin that allocates until its runtime gives up; a
		// smaller limit keeps the test short.
		{"go allocation", func() Spec {
			s := scriptedSpec(t, "", "")
			s.MemoryLimit = 16 << 20
			return s
		}(), "out of memory"},
	}
	const instances, runs = 2, 1000
	// slack is for what the test itself allocates, and the Go heap's
	// garbage between two collections. Without the allocator of
	// memory.go, the Go plugin's copies on growth take it past this.
	const slack = 16 << 20
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.spec
			s.Name, s.Instances = "hog", instances
			// Memory is what is tested, not time: on a loaded machine a
			// deep recursion may take longer than the default second,
			// and a timeout would hide the failure the case expects.
			s.Timeout = time.Minute
			s.MemoryLimit = cmpOr(s.MemoryLimit, DefaultMemoryLimit)
			p := load(t, h, s)
			chain := NewChain(p)
			bound := int64(instances * (s.MemoryLimit + stackBound(cmpOr(s.StackLimit, DefaultStackLimit))))
			runtime.GC()
			debug.FreeOSMemory()
			base := rss(t)
			var peak int64
			start := time.Now()
			for i := range runs {
				o := chain.Run(context.Background(), rcpt("oom@x.test"), nil)
				if len(o.Verdicts) != 1 || o.Verdicts[0].Err == nil || !strings.Contains(o.Verdicts[0].Err.Error(), c.error) {
					t.Fatalf("run %d: %+v, want a failure saying %q", i, o, c.error)
				}
				peak = max(peak, rss(t))
			}
			debug.FreeOSMemory()
			idle := rss(t)
			t.Logf("%d runs in %v: resident %d MiB before, peak %d MiB, %d MiB after; bound %d MiB over the start",
				runs, time.Since(start).Round(time.Millisecond), base>>20, peak>>20, idle>>20, bound>>20)
			if peak-base > bound+slack {
				t.Errorf("peak %d MiB over the start, over the bound of %d MiB (+%d MiB slack)", (peak-base)>>20, bound>>20, slack>>20)
			}
			if idle-base > bound+slack {
				t.Errorf("idle %d MiB over the start, over the bound of %d MiB (+%d MiB slack)", (idle-base)>>20, bound>>20, slack>>20)
			}
		})
	}
}

func cmpOr(a, b uint64) uint64 {
	if a != 0 {
		return a
	}
	return b
}
