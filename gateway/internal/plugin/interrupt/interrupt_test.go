package interrupt

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// instrument instruments a module, which must then compile and validate,
// with every loop checked.
func instrument(t testing.TB, wasm []byte) []byte {
	t.Helper()
	out, err := Instrument(wasm, DefaultStackBudget)
	if err != nil {
		t.Fatalf("Instrument: %v", err)
	}
	mustCompile(t, out)
	validate(t, out)
	if loops, checked := loopsChecked(t, out); checked != loops {
		t.Fatalf("%d of %d loops start with the check", checked, loops)
	}
	return out
}

// behaviour is a module whose functions compute results with every kind
// of control flow and the instructions whose immediates could hide a
// loop opcode (0x03): each result must be the same after instrumenting.
const behaviour = `(module
  (import "env" "note" (func $note (param i32)))
  (import "consts" "base" (global $base i32))
  (type $pair (func (param i32 i32) (result i32)))
  (type $loopy (func (param i32) (result i32 i32)))
  (memory 1 1 shared)
  (table $t 4 funcref)
  (table $u 2 funcref)
  (global $fref (mut funcref) (ref.func $add))
  (global $three (mut i32) (i32.const 3))
  (elem (i32.const 0) $add $sub)
  (elem (table $u) (i32.const 0) func $add)
  (elem $passive func $sub $add)
  (elem declare func $sum)
  (elem (i32.const 2) funcref (ref.func $sub) (ref.null func))
  (data $d "\03\03\03\03\03\03\03\03")

  (func $add (type $pair) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $pair) (i32.sub (local.get 0) (local.get 1)))

  ;; sum 1..n with a loop whose block type is a type index with a param
  (func $sum (export "sum") (param $n i32) (result i32)
    (local $i i32)
    (i32.const 0)
    (loop $l (param i32) (result i32)
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (i32.add (local.get $i))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n)))))

  ;; nested loops, br_table out of a block inside a loop, calls
  (func (export "nested") (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $acc i32)
    (loop $outer
      (local.set $j (i32.const 0))
      (loop $inner
        (block $b2 (block $b1 (block $b0
          (br_table $b0 $b1 $b2 (i32.rem_u (local.get $j) (i32.const 3))))
          (local.set $acc (call $add (local.get $acc) (i32.const 3)))
          (br $b2))
          (local.set $acc (call_indirect $t (type $pair) (local.get $acc) (i32.const 1) (i32.const 1))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $inner (i32.lt_u (local.get $j) (i32.const 5))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $outer (i32.lt_u (local.get $i) (local.get $n))))
    (call $note (local.get $acc))
    (local.get $acc))

  ;; a loop in each arm of an if, and multi-value results
  (func $arms (export "arms") (param $n i32) (result i32)
    (local $k i32)
    (if (result i32) (i32.and (local.get $n) (i32.const 1))
      (then (loop $a (result i32)
        (local.set $k (i32.add (local.get $k) (i32.const 3)))
        (br_if $a (i32.lt_u (local.get $k) (local.get $n)))
        (local.get $k)))
      (else (loop $b (result i32)
        (local.set $k (i32.add (local.get $k) (i32.const 2)))
        (br_if $b (i32.lt_u (local.get $k) (local.get $n)))
        (local.get $k)))))
  (func $two (type $loopy) (loop (result i32 i32) (local.get 0) (i32.const 3)))
  (func (export "multi") (param i32) (result i32) (call $two (local.get 0)) (i32.mul))

  ;; immediates full of 3s: constants, memory offsets, SIMD lanes and
  ;; shuffles, bulk memory, atomics, references, typed select
  (func (export "immediates") (param $n i32) (result i32)
    (local $v v128) (local $acc i32)
    (i64.store offset=3 (i32.const 3) (i64.const 0x0303030303030303))
    (f32.store offset=3 (i32.const 16) (f32.const 3.0000002))
    (f64.store offset=3 (i32.const 24) (f64.const 3.0000000000000004))
    (local.set $v (v128.const i8x16 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3))
    (local.set $v (i8x16.shuffle 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 (local.get $v) (local.get $v)))
    (local.set $v (i32x4.replace_lane 3 (local.get $v) (i32.const 3)))
    (local.set $v (v128.load8_lane offset=3 3 (i32.const 3) (local.get $v)))
    (v128.store16_lane offset=3 3 (i32.const 40) (local.get $v))
    (local.set $v (v128.load32_zero offset=3 (i32.const 3)))
    (local.set $v (v128.load8x8_s offset=3 (i32.const 3)))
    (local.set $v (i16x8.add (local.get $v) (v128.load offset=3 (i32.const 3))))
    (memory.init $d (i32.const 64) (i32.const 0) (i32.const 3))
    (memory.copy (i32.const 80) (i32.const 64) (i32.const 3))
    (memory.fill (i32.const 90) (i32.const 3) (i32.const 3))
    (table.init $t $passive (i32.const 3) (i32.const 0) (i32.const 1))
    (table.copy $t $u (i32.const 1) (i32.const 0) (i32.const 1))
    (drop (table.grow $u (ref.func $sub) (i32.const 0)))
    (table.fill $u (i32.const 1) (ref.null func) (i32.const 0))
    (table.set $u (i32.const 1) (table.get $t (i32.const 3)))
    (drop (i32.atomic.rmw.add offset=3 (i32.const 97) (i32.const 3)))
    (atomic.fence)
    (drop (i32.trunc_sat_f32_s (f32.const 3.5)))
    (drop (i32.extend8_s (i32.const 3)))
    (loop $l
      (local.set $acc (i32.add (local.get $acc)
        (select (result i32) (i32.const 3) (i32.const 5) (local.get $n))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (i32.gt_s (local.get $n) (i32.const 0))))
    (i32.add (local.get $acc)
      (i32.add (i8x16.extract_lane_u 3 (local.get $v))
        (i32.add (i32.load8_u offset=3 (i32.const 80))
          (i32.add (i32.load offset=3 (i32.const 97))
            (i32.add (table.size $u) (global.get $three)))))))

  ;; references: through a funcref global and a table filled at start
  (func (export "refs") (param $n i32) (result i32)
    (table.set $u (i32.const 1) (global.get $fref))
    (i32.add (global.get $base)
      (call_indirect $u (type $pair) (local.get $n) (i32.const 3) (i32.const 1))))

  ;; a tail call into a loop
  (func $countdown (param $n i32) (result i32)
    (loop $l (result i32)
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (i32.gt_s (local.get $n) (i32.const 0)))
      (i32.const 33)))
  (func (export "tail") (param $n i32) (result i32) (return_call $countdown (local.get $n)))
)`

func TestInstrumentKeepsBehaviour(t *testing.T) {
	orig := wat(t, behaviour)
	out := instrument(t, orig)
	var notes [2][]uint32
	run := func(which int, wasm []byte) instance {
		return instantiate(t, wasm, map[string]api.GoModuleFunc{
			"note": func(_ context.Context, _ api.Module, s []uint64) { notes[which] = append(notes[which], uint32(s[0])) },
		})
	}
	a, b := run(0, orig), run(1, out)
	ctx := context.Background()
	for _, name := range []string{"sum", "nested", "arms", "multi", "immediates", "refs", "tail"} {
		for _, n := range []uint64{1, 2, 7, 100} {
			want, err := a.ExportedFunction(name).Call(ctx, n)
			if err != nil {
				t.Fatalf("%s(%d) before instrumenting: %v", name, n, err)
			}
			got, err := b.ExportedFunction(name).Call(ctx, n)
			if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s(%d) = %v, %v; before instrumenting %v", name, n, got, err, want)
			}
		}
	}
	if fmt.Sprint(notes[0]) != fmt.Sprint(notes[1]) || len(notes[0]) == 0 {
		t.Errorf("imported function saw %v, before instrumenting %v", notes[1], notes[0])
	}
	// The names follow their functions to their new indices. (wazero
	// makes up names with the index for functions without one.)
	for name, def := range mustCompile(t, out).ExportedFunctions() {
		want := mustCompile(t, orig).ExportedFunctions()[name]
		if !strings.Contains(want.DebugName(), ".$") && def.DebugName() != want.DebugName() {
			t.Errorf("export %s is named %q, before instrumenting %q", name, def.DebugName(), want.DebugName())
		}
	}
}

func mustCompile(t testing.TB, wasm []byte) wazero.CompiledModule {
	t.Helper()
	ctx := context.Background()
	rt := newCachedRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	m, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// runaways never return on their own: each must stop once the flag is
// set. None but the first has a loop at the top; the call trees have no
// loop at all, and no recursion deep enough to exhaust the stack.
var runaways = `(module
  (global $sink (mut i32) (i32.const 0))
  (func (export "loop") (loop $l (br $l)))
  (func (export "nested")
    (local $i i32)
    (loop $outer
      (local.set $i (i32.const 0))
      (loop $inner
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $inner (i32.lt_u (local.get $i) (i32.const 1000))))
      (br $outer)))
  (func $f (export "recursion") (param $depth i32)
    (global.set $sink (i32.add (global.get $sink) (i32.const 1)))
    (if (local.get $depth) (then
      (call $f (i32.sub (local.get $depth) (i32.const 1)))
      (call $f (i32.sub (local.get $depth) (i32.const 1))))))
  (func (export "calltree") (call $t0) (call $t0))
  ` + callTree + `
  (func $forever (loop $l (br $l)))
  (start $forever)
)`

// callTree is 60 functions, each calling the next twice: 2^60 calls.
var callTree = func() string {
	var b strings.Builder
	for i := range 60 {
		fmt.Fprintf(&b, "(func $t%d (call $t%d) (call $t%d))\n", i, i+1, i+1)
	}
	return b.String() + "(func $t60 (global.set $sink (i32.add (global.get $sink) (i32.const 1))))\n"
}()

// stopped calls fn with args, sets the flag after a while, and returns
// the call's error; it fails the test if the call does not return within
// a generous bound.
func stopped(t *testing.T, in instance, fn api.Function, args ...uint64) error {
	t.Helper()
	timer := time.AfterFunc(20*time.Millisecond, func() { in.flag(t).Set(1) })
	defer timer.Stop()
	done := make(chan error, 1)
	go func() {
		_, err := fn.Call(context.Background(), args...)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the call was not stopped")
		return nil
	}
}

func TestInterruptStopsRunaways(t *testing.T) {
	orig := wat(t, runaways)
	out := instrument(t, orig)
	for _, c := range []struct {
		name string
		args []uint64
	}{{"loop", nil}, {"nested", nil}, {"recursion", []uint64{60}}, {"calltree", nil}, {Start, nil}} {
		// A fresh instance each: one that trapped may be left in any state.
		in := instantiate(t, out, nil) // the start function does not run here, or this would never return
		fn := in.ExportedFunction(c.name)
		if fn == nil {
			t.Fatalf("%s is not exported", c.name)
		}
		err := stopped(t, in, fn, c.args...)
		if err == nil || !strings.Contains(err.Error(), "wasm error: unreachable") {
			t.Errorf("%s: %v, want the unreachable trap", c.name, err)
		}
	}
}

// A garbage collection while a guest loops must not wait for the guest:
// the guest yields to Go regularly. Without that, runtime.GC would wait
// for the guest, the timer would wait for runtime.GC, and nothing would
// return.
func TestGarbageCollectionDuringRunaway(t *testing.T) {
	in := instantiate(t, instrument(t, wat(t, runaways)), nil)
	gcDone := make(chan struct{})
	go func() {
		time.Sleep(5 * time.Millisecond) // the guest is looping by now, most likely
		for range 3 {
			runtime.GC()
		}
		close(gcDone)
	}()
	err := stopped(t, in, in.ExportedFunction("nested"))
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("nested: %v, want the unreachable trap", err)
	}
	select {
	case <-gcDone:
	case <-time.After(30 * time.Second):
		t.Fatal("garbage collection never finished")
	}
	if in.yields.Load() == 0 {
		t.Error("the guest never called the yield function")
	}
}

func TestFlagResetLetsCallsRun(t *testing.T) {
	in := instantiate(t, instrument(t, wat(t, behaviour)), map[string]api.GoModuleFunc{
		"note": func(context.Context, api.Module, []uint64) {},
	})
	sum := in.ExportedFunction("sum")
	in.flag(t).Set(1)
	if _, err := sum.Call(context.Background(), 10); err == nil {
		t.Fatal("sum ran with the flag set")
	}
	in.flag(t).Set(0)
	if got, err := sum.Call(context.Background(), 10); err != nil || got[0] != 55 {
		t.Errorf("sum(10) after the flag was reset = %v, %v; want 55", got, err)
	}
}

// A module that needs none of what instrumenting adds to gets each
// section in its place.
func TestMissingSections(t *testing.T) {
	for _, src := range []string{
		`(module)`,
		`(module (func $f (loop $l (br $l))) (start $f))`,
		`(module (memory 1) (data (i32.const 0) "x"))`,
		`(module (import "consts" "base" (global i32)) (func (export "f") (result i32) (global.get 0)))`,
	} {
		out := instrument(t, wat(t, src))
		in := instantiate(t, out, nil)
		if in.flag(t).Get() != 0 {
			t.Errorf("%s: the flag starts at %d", src, in.flag(t).Get())
		}
		if strings.Contains(src, "start") != (in.ExportedFunction(Start) != nil) {
			t.Errorf("%s: export %s is there: %v", src, Start, in.ExportedFunction(Start) != nil)
		}
	}
}

func TestReservedNamesRefused(t *testing.T) {
	cases := map[string]string{
		`(module (global (export "sluice_interrupt") (mut i32) (i32.const 0)))`: `already uses the export name sluice_interrupt, a name reserved`,
		`(module (func (export "sluice_start")))`:                               `already uses the export name sluice_start`,
		`(module (import "sluice_interrupt" "yield" (func)))`:                   `already uses the import module name sluice_interrupt`,
	}
	for src, want := range cases {
		_, err := Instrument(wat(t, src), DefaultStackBudget)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
	once, err := Instrument(wat(t, `(module (func (loop)))`), DefaultStackBudget)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Instrument(once, DefaultStackBudget); err == nil || !strings.Contains(err.Error(), "already uses") {
		t.Errorf("instrumenting twice: %v, want a refusal", err)
	}
}

func TestNotAModule(t *testing.T) {
	cases := map[string]string{
		"#!/bin/sh\n":                         "is not a WebAssembly module",
		"":                                    "is not a WebAssembly module",
		"\x00asm\x0d\x00\x01\x00":             "is in binary format version 0d000100, not 1",
		"\x00asm\x01\x00\x00\x00\x01\x05\x01": "cannot be instrumented: section 1: unexpected end",
		"\x00asm\x01\x00\x00\x00\x0e\x00":     "cannot be instrumented: unknown section id 14",
		"\x00asm\x01\x00\x00\x00\x02\x01\x00\x01\x01\x00": "cannot be instrumented: section 1 is out of order or repeated",
	}
	for in, want := range cases {
		_, err := Instrument([]byte(in), DefaultStackBudget)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// Every truncation of a module is refused, never a panic.
func TestTruncated(t *testing.T) {
	wasm := wat(t, behaviour)
	for n := len(header); n < len(wasm); n++ {
		if out, err := Instrument(wasm[:n], DefaultStackBudget); err == nil && compile(wasm[:n]) != nil && compile(out) == nil {
			t.Errorf("the first %d bytes: an invalid module came out valid", n)
		}
	}
}

func TestUnknownOpcodeRefused(t *testing.T) {
	// try (exception handling) is not decoded.
	wasm := wat(t, `(module (func (nop)))`)
	i := bytes.LastIndex(wasm, []byte{0x01, 0x0b}) // nop; end
	wasm[i] = 0x06
	_, err := Instrument(wasm, DefaultStackBudget)
	if err == nil || !strings.Contains(err.Error(), "code of function 0: unknown opcode 0x06") {
		t.Errorf("Instrument = %v, want unknown opcode 0x06 in function 0", err)
	}
}

func TestCustomSections(t *testing.T) {
	wasm := wat(t, `(module (func (loop)))`)
	custom := func(name, data string) []byte {
		return appendSection(nil, secCustom, append(appendName(nil, name), data...))
	}
	for _, c := range []struct {
		name string
		kept bool
	}{{"producers", true}, {"go:buildid", true}, {".debug_info", false}, {".debug_line", false},
		{"sourceMappingURL", false}, {"external_debug_info", false}, {"linking", false}, {"reloc.CODE", false}} {
		sec := custom(c.name, "\x01\x02\x03 some data")
		out := instrument(t, append(bytes.Clone(wasm), sec...))
		if bytes.Contains(out, sec) != c.kept {
			t.Errorf("custom section %s kept: %v, want %v", c.name, !c.kept, c.kept)
		}
	}
}

func TestDeterministic(t *testing.T) {
	wasm := wat(t, behaviour)
	a, _ := Instrument(wasm, DefaultStackBudget)
	b, _ := Instrument(wasm, DefaultStackBudget)
	if !bytes.Equal(a, b) {
		t.Error("two runs gave different modules")
	}
}

// The budget given to Instrument is the module's own: a recursion that
// goes over the default budget traps, marking the budget StackTrapped, and
// runs with a larger budget, which it gives back whole. The two modules
// differ, so that a compilation cache keyed on the module keeps them
// apart; a budget over MaxStackBudget is refused.
func TestStackBudget(t *testing.T) {
	wasm := wat(t, `(module
  (func $depth (export "depth") (param i32) (result i32)
    (if (result i32) (local.get 0)
      (then (i32.add (i32.const 1) (call $depth (i32.sub (local.get 0) (i32.const 1)))))
      (else (i32.const 0)))))`)
	// Every counted frame is estimated at more than frameBase+valueBytes
	// bytes, so this many go over the default budget; and at most a few
	// hundred bytes, so that 64 MiB holds them.
	const calls = DefaultStackBudget/(frameBase+valueBytes) + 1
	const large = 64 << 20
	for _, c := range []struct {
		budget uint32
		fits   bool
	}{{DefaultStackBudget, false}, {large, true}} {
		out, err := Instrument(wasm, c.budget)
		if err != nil {
			t.Fatal(err)
		}
		mustCompile(t, out)
		in := instantiate(t, out, nil)
		budget := in.ExportedGlobal(StackGlobal)
		if budget == nil || uint32(budget.Get()) != c.budget {
			t.Fatalf("budget %d: the module starts with %v", c.budget, budget)
		}
		got, err := in.ExportedFunction("depth").Call(context.Background(), calls)
		switch {
		case c.fits && (err != nil || got[0] != calls):
			t.Errorf("budget %d: depth(%d) = %v, %v; want %d", c.budget, calls, got, err, calls)
		case c.fits && uint32(budget.Get()) != c.budget:
			t.Errorf("budget %d: %d left after the call, want all of it back", c.budget, uint32(budget.Get()))
		case !c.fits && (err == nil || uint32(budget.Get()) != StackTrapped):
			t.Errorf("budget %d: depth(%d) = %v, %v with %d left; want the trap at the stack budget", c.budget, calls, got, err, uint32(budget.Get()))
		}
	}
	a, _ := Instrument(wasm, DefaultStackBudget)
	b, _ := Instrument(wasm, large)
	if bytes.Equal(a, b) {
		t.Error("two budgets gave the same module")
	}
	if _, err := Instrument(wasm, MaxStackBudget+1); err == nil || !strings.Contains(err.Error(), "stack budget") {
		t.Errorf("a budget over MaxStackBudget: %v, want it refused", err)
	}
}

func TestCheckStackBudget(t *testing.T) {
	for n, ok := range map[uint64]bool{
		0: false, 128 << 10: false, MinStackBudget: true, DefaultStackBudget: true, 32 << 20: true,
		MaxStackBudget: true, 6 << 20: false, MinStackBudget + 1: false, 2 * MaxStackBudget: false,
	} {
		if err := CheckStackBudget(n); (err == nil) != ok {
			t.Errorf("CheckStackBudget(%d) = %v, want ok %v", n, err, ok)
		}
	}
}

// The real plugins, built from source: they instrument, compile and
// validate with every loop checked. plugin's tests run them so.
func TestRealPlugins(t *testing.T) {
	for _, pkg := range []string{"./plugins/router", "./plugins/dmarc", "./gateway/internal/plugin/testdata/scripted"} {
		wasm, err := os.ReadFile(wasmbuild.ForTest(t, pkg))
		if err != nil {
			t.Fatal(err)
		}
		out := instrument(t, wasm)
		loops, _ := loopsChecked(t, out)
		t.Logf("%s: %d loops, %d → %d bytes", pkg, loops, len(wasm), len(out))
		if loops < 100 {
			t.Errorf("%s: only %d loops found", pkg, loops)
		}
		orig := mustCompile(t, wasm).ExportedFunctions()
		for name, def := range mustCompile(t, out).ExportedFunctions() {
			if want, ok := orig[name]; ok && def.DebugName() != want.DebugName() {
				t.Errorf("%s: export %s is named %q, was %q", pkg, name, def.DebugName(), want.DebugName())
			}
		}
	}
}

func BenchmarkInstrument(b *testing.B) {
	wasm, err := os.ReadFile(wasmbuild.ForTest(b, "./plugins/router"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(wasm)))
	for b.Loop() {
		if _, err := Instrument(wasm, DefaultStackBudget); err != nil {
			b.Fatal(err)
		}
	}
}

// A long bulk instruction yields first, so that a loop of them cannot
// hold up the garbage collector for YieldEvery of them; a short one does
// not, so that it costs nothing.
func TestBulkInstructionsYield(t *testing.T) {
	in := instantiate(t, instrument(t, wat(t, `(module
	  (memory 4)
	  (func (export "fill") (param $n i32) (param $len i32)
	    (loop $l
	      (memory.fill (i32.const 0) (i32.const 3) (local.get $len))
	      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
	      (br_if $l (local.get $n)))))`)), nil)
	fill := in.ExportedFunction("fill")
	if _, err := fill.Call(context.Background(), 100, 1024); err != nil {
		t.Fatal(err)
	}
	if n := in.yields.Load(); n != 0 {
		t.Errorf("100 fills of 1 KiB yielded %d times, want 0", n)
	}
	if _, err := fill.Call(context.Background(), 100, 128<<10); err != nil {
		t.Fatal(err)
	}
	if n := in.yields.Load(); n != 100 {
		t.Errorf("100 fills of 128 KiB yielded %d times, want 100", n)
	}
	if b, ok := in.Memory().Read(128<<10-1, 2); !ok || b[0] != 3 || b[1] != 0 {
		t.Errorf("memory after the fills: %v, want 3 then 0", b)
	}
}

// A function declaring billions of locals, in a few bytes, is refused
// before wazero would try to allocate them.
func TestHugeLocalsRefused(t *testing.T) {
	// type () → (); one function; its body: one group of 2^32-16 i32
	// locals, nop, end.
	wasm := []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a\x0b\x01\x09\x01\xf0\xff\xff\xff\x0f\x7f\x01\x0b")
	_, err := Instrument(wasm, DefaultStackBudget)
	if err == nil || !strings.Contains(err.Error(), "code of function 0: 4294967280 locals: over the limit of 50000") {
		t.Errorf("Instrument = %v, want a refusal of 4294967280 locals", err)
	}
}

// wazero reads a SIMD opcode as one byte, the specification as a LEB128
// number: an encoding on which they disagree is refused, or a loop that
// wazero sees could hide inside what Instrument took for immediates.
func TestSIMDOpcodeFormRefused(t *testing.T) {
	wasm := wat(t, `(module (func (drop (i16x8.abs (v128.const i32x4 0 0 0 0)))))`)
	i := bytes.Index(wasm, []byte{0xfd, 0x80, 0x01}) // i16x8.abs, 0x80
	if i < 0 {
		t.Fatal("no i16x8.abs in the module")
	}
	if _, err := Instrument(wasm, DefaultStackBudget); err != nil {
		t.Fatalf("the shortest form: %v", err)
	}
	wasm[i+2] = 0x00 // 0xfd 0x80 0x00: v128.load to the specification, i16x8.abs; unreachable to wazero
	_, err := Instrument(wasm, DefaultStackBudget)
	if err == nil || !strings.Contains(err.Error(), "SIMD opcode 0 at offset 20 is not in its shortest form: wazero would decode it otherwise") {
		t.Errorf("Instrument = %v, want a refusal of the padded opcode", err)
	}
}
