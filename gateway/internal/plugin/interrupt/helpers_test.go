package interrupt

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// The tests write modules in WebAssembly text and build them with wabt's
// wat2wasm, and check the output with wabt's own decoder (wasm-objdump,
// wasm-validate): Debian package wabt. The differential tests generate
// modules with binaryen's wasm-opt: Debian package binaryen.

// tool returns the path of a command the tests need.
func tool(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install Debian package %s", name, pkg)
	}
	return path
}

// wat builds a module from WebAssembly text.
func wat(t testing.TB, src string) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool(t, "wat2wasm", "wabt"), "--enable-threads", "--enable-tail-call", "--debug-names", "-o", out, in)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeTemp writes a module to a file for the command-line tools.
func writeTemp(t testing.TB, wasm []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(path, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// validate checks a module with wabt's validator.
func validate(t testing.TB, wasm []byte) {
	t.Helper()
	cmd := exec.Command(tool(t, "wasm-validate", "wabt"), "--enable-threads", "--enable-tail-call", writeTemp(t, wasm))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wasm-validate: %v\n%s", err, b)
	}
}

// features are those of the host's runtime, plus threads and tail calls
// so that the tests cover their opcodes.
var features = api.CoreFeaturesV2 | experimental.CoreFeaturesThreads | experimental.CoreFeaturesTailCall

// newRuntime returns a runtime with the tests' features.
func newRuntime(ctx context.Context) wazero.Runtime {
	return wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(features))
}

// newCachedRuntime returns a runtime with the compilation cache that
// tests share, for the big modules of real plugins.
func newCachedRuntime(ctx context.Context) wazero.Runtime {
	config := wazero.NewRuntimeConfig().WithCoreFeatures(features)
	if cache, err := wazero.NewCompilationCacheWithDir(wasmbuild.CacheDirForTest()); err == nil {
		config = config.WithCompilationCache(cache)
	}
	return wazero.NewRuntimeWithConfig(ctx, config)
}

// compile compiles a module with wazero, as the host does. wazero v1.12
// panics on some malformed modules (testdata/fuzz has one): that is an
// error too.
func compile(wasm []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("wazero panicked: %v", p)
		}
	}()
	ctx := context.Background()
	rt := newRuntime(ctx)
	defer rt.Close(ctx)
	_, err = rt.CompileModule(ctx, wasm)
	return err
}

// instance is an instantiated module with the yield function provided.
type instance struct {
	api.Module
	yields *atomic.Int64 // calls of the yield function
}

// instantiate instantiates a module (instrumented or not), providing the
// yield function and any host functions of module "env" given.
func instantiate(t testing.TB, wasm []byte, env map[string]api.GoModuleFunc) instance {
	t.Helper()
	ctx := context.Background()
	rt := newRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	in := instance{yields: &atomic.Int64{}}
	_, err := rt.NewHostModuleBuilder(YieldModule).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) { in.yields.Add(1) }), nil, nil).
		Export(YieldFunc).Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) > 0 {
		b := rt.NewHostModuleBuilder("env")
		for name, f := range env {
			b = b.NewFunctionBuilder().WithGoModuleFunction(f, []api.ValueType{api.ValueTypeI32}, nil).Export(name)
		}
		if _, err := b.Instantiate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Module "consts" exports global "base", 40, for tests of imported
	// globals.
	consts := wat(t, `(module (global (export "base") i32 (i32.const 40)))`)
	if _, err := rt.InstantiateWithConfig(ctx, consts, wazero.NewModuleConfig().WithName("consts")); err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	in.Module = mod
	return in
}

// flag returns an instrumented instance's interrupt flag.
func (in instance) flag(t testing.TB) api.MutableGlobal {
	t.Helper()
	g, ok := in.ExportedGlobal(Global).(api.MutableGlobal)
	if !ok {
		t.Fatalf("no mutable global %s exported", Global)
	}
	return g
}

// objdump is wasm-objdump's disassembly of a module, one instruction a
// line, without offsets and bytes.
func objdump(t testing.TB, wasm []byte) []string {
	t.Helper()
	out, err := exec.Command(tool(t, "wasm-objdump", "wabt"), "-d", writeTemp(t, wasm)).Output()
	if err != nil {
		t.Fatalf("wasm-objdump: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if _, instr, ok := strings.Cut(l, "| "); ok {
			lines = append(lines, strings.TrimSpace(instr))
		}
	}
	return lines
}

// checkPattern is the check as wasm-objdump shows it.
var checkPattern = []*regexp.Regexp{
	regexp.MustCompile(`^global\.get (\d+)$`),
	regexp.MustCompile(`^i32\.const 1$`),
	regexp.MustCompile(`^i32\.sub$`),
	regexp.MustCompile(`^global\.set (\d+)$`),
	regexp.MustCompile(`^global\.get (\d+)$`),
	regexp.MustCompile(`^i32\.eqz$`),
	regexp.MustCompile(`^if$`),
	regexp.MustCompile(`^i32\.const 1000$`),
	regexp.MustCompile(`^global\.set (\d+)$`),
	regexp.MustCompile(`^call \d+ <` + YieldModule + `\.` + YieldFunc + `>$`),
	regexp.MustCompile(`^end$`),
	regexp.MustCompile(`^global\.get (\d+) <` + Global + `>$`),
	regexp.MustCompile(`^if$`),
	regexp.MustCompile(`^unreachable$`),
	regexp.MustCompile(`^end$`),
}

// checkAt says whether the check starts at lines[i].
func checkAt(lines []string, i int) bool {
	if i+len(checkPattern) > len(lines) {
		return false
	}
	for j, re := range checkPattern {
		if !re.MatchString(lines[i+j]) {
			return false
		}
	}
	return true
}

// loopsChecked counts, by wasm-objdump's decoding, the loops of a module
// and those whose body starts with the check.
func loopsChecked(t testing.TB, wasm []byte) (loops, checked int) {
	lines := objdump(t, wasm)
	for i, l := range lines {
		if l == "loop" || strings.HasPrefix(l, "loop ") {
			loops++
			if checkAt(lines, i+1) {
				checked++
			}
		}
	}
	return loops, checked
}
