package interrupt

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// binaryenFeatures are the features of the modules binaryen makes: the
// host's, plus tail calls. SIMD and threads are left out of the runs
// (a v128 import cannot be a Go function) and compiled only. Binaryen
// 108 writes typed function references when asked for reference types,
// which wazero refuses; TestInstrumentKeepsBehaviour covers them.
var binaryenFeatures = []string{"--mvp-features", "--enable-sign-ext", "--enable-nontrapping-float-to-int",
	"--enable-bulk-memory", "--enable-multivalue", "--enable-tail-call"}

// binaryen makes a module from random bytes with binaryen's fuzzer
// (wasm-opt -ttf), which writes valid modules using every instruction of
// the features it is given: loops, calls, tables, references, bulk
// memory, imports it logs through.
func binaryen(t testing.TB, seed uint64, extra ...string) []byte {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, 0x5eed))
	random := make([]byte, 1000+rnd.IntN(30000))
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "random"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(in, random, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-ttf", in, "-o", out}, binaryenFeatures...)
	cmd := exec.Command(tool(t, "wasm-opt", "binaryen"), append(args, extra...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wasm-opt: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBinaryenModules is a differential test: every export of a module
// binaryen made is called on the module and on its instrumented form, and
// the results, traps and logged values must be the same.
func TestBinaryenModules(t *testing.T) {
	n := uint64(40)
	if testing.Short() {
		n = 5
	}
	var calls, checks int
	for seed := range n {
		orig := binaryen(t, seed)
		out := instrument(t, orig) // compiles, validates, every loop checked
		want, got := runExports(t, orig), runExports(t, out)
		if !slices.Equal(want, got) {
			t.Errorf("seed %d: the instrumented module behaves differently:\n%s", seed, diff(want, got))
		}
		loops, _ := loopsChecked(t, out)
		calls += len(want)
		checks += loops
		// SIMD and threads: compiled and checked only.
		instrument(t, binaryen(t, seed, "--enable-simd", "--enable-threads"))
	}
	t.Logf("%d modules, %d loops, %d calls compared", n, checks, calls)
}

// runExports instantiates a module and calls each exported function in
// name order with zero arguments, and returns what happened, one line a
// call: the values the module logged, then the results or the trap.
func runExports(t *testing.T, wasm []byte) []string {
	t.Helper()
	ctx := context.Background()
	// Close on context done stops a module that runs too long in either
	// form: its run is then left out of the comparison.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(features).WithCloseOnContextDone(true))
	defer rt.Close(ctx)
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	builders := map[string]wazero.HostModuleBuilder{}
	for _, d := range compiled.ImportedFunctions() {
		mod, name, _ := d.Import()
		if builders[mod] == nil {
			builders[mod] = rt.NewHostModuleBuilder(mod)
		}
		fn := func(_ context.Context, _ api.Module, stack []uint64) {
			if mod != YieldModule {
				logged = append(logged, fmt.Sprint(name, values(d.ParamTypes(), stack)))
			}
			clear(stack[:len(d.ResultTypes())])
		}
		builders[mod].NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(fn), d.ParamTypes(), d.ResultTypes()).Export(name)
	}
	for _, b := range builders {
		if _, err := b.Instantiate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig())
	if err != nil {
		return []string{"instantiate: " + firstLine(err)}
	}
	var runs []string
	if start := mod.ExportedFunction(Start); start != nil { // run as instantiating the original does
		if _, err := start.Call(ctx); err != nil {
			return []string{"instantiate: " + firstLine(err)}
		}
	}
	names := make([]string, 0, len(compiled.ExportedFunctions()))
	for name := range compiled.ExportedFunctions() {
		if name != Start {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		fn := mod.ExportedFunction(name)
		logged = logged[:0]
		results, err := fn.Call(ctx, make([]uint64, len(fn.Definition().ParamTypes()))...)
		if ctx.Err() != nil {
			break // too long to compare
		}
		run := fmt.Sprintf("%s: logged %v", name, logged)
		if err != nil {
			runs = append(runs, run+", trapped: "+firstLine(err))
			continue
		}
		runs = append(runs, fmt.Sprintf("%s, returned %v", run, values(fn.Definition().ResultTypes(), results)))
	}
	return runs
}

// values returns the values of the types on a stack: the bits of an i32
// or f32 above the low 32 are not part of the value.
func values(types []api.ValueType, stack []uint64) []uint64 {
	v := make([]uint64, len(types))
	for i, t := range types {
		v[i] = stack[i]
		if t == api.ValueTypeI32 || t == api.ValueTypeF32 {
			v[i] = uint64(uint32(v[i]))
		}
	}
	return v
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

func diff(want, got []string) string {
	var b strings.Builder
	for i := range max(len(want), len(got)) {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			fmt.Fprintf(&b, "  was: %s\n  now: %s\n", w, g)
		}
	}
	return b.String()
}
