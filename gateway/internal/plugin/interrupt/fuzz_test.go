package interrupt

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzInstrument checks that Instrument never panics, that it accepts any
// module wazero compiles (unless it uses a reserved name), and that what
// it makes of such a module compiles too.
func FuzzInstrument(f *testing.F) {
	for _, src := range []string{behaviour, runaways, `(module)`,
		`(module (memory 1) (func (export "f") (param i32) (memory.fill (i32.const 0) (i32.const 0) (local.get 0))))`} {
		f.Add(wat(f, src))
	}
	for seed := range uint64(3) {
		f.Add(binaryen(f, seed))
	}
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := Instrument(wasm, DefaultStackBudget)
		if errors.Is(err, errTruncated) || errors.Is(err, errLimit) || !bytes.HasPrefix(wasm, header) {
			// Not there to decode, for any decoder; or over a limit
			// that protects wazero, which first allocates what a count
			// promises: gigabytes.
			return
		}
		if _, err := parse(wasm); err != nil {
			// Sections out of order or malformed: wazero refuses those
			// too, after allocating what their counts promise, which
			// can take seconds.
			return
		}
		// wazero is judged on the module without its custom sections:
		// it allocates what a malformed "name" section promises too.
		// Instrument drops a "name" section it cannot read whole.
		core := withoutCustomSections(wasm)
		if core == nil {
			return
		}
		valid := compile(core) == nil
		if err != nil {
			if valid && !strings.Contains(err.Error(), "already uses") && !errors.Is(err, errAmbiguous) {
				t.Fatalf("a module wazero compiles was refused: %v", err)
			}
			return
		}
		if valid {
			if err := compile(out); err != nil {
				t.Fatalf("the instrumented form of a module wazero compiles does not compile: %v", err)
			}
		}
	})
}

// withoutCustomSections returns the module without its custom sections,
// or nil if its sections do not read.
func withoutCustomSections(wasm []byte) []byte {
	if !bytes.HasPrefix(wasm, header) {
		return nil
	}
	r := &reader{b: wasm, off: len(header)}
	out := bytes.Clone(header)
	for !r.done() {
		at := r.off
		id := r.byte()
		r.bytes(uint64(r.u32()))
		if r.err != nil {
			return nil
		}
		if id != secCustom {
			out = append(out, wasm[at:r.off]...)
		}
	}
	return out
}
