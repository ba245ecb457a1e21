package plugin

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// memoryModule is the smallest WebAssembly module with a memory: one page
// (64 KiB), exported as "memory". The fuzzer owns all of it.
var memoryModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
	0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, at least 1 page
	0x07, 0x0a, 0x01, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00, // export it
}

// answerBuffer gives, for the functions that write into the guest, the
// argument positions of the buffer's pointer and capacity.
var answerBuffer = map[string][2]int{
	abi.FuncHeaderGet: {3, 4}, abi.FuncHeaders: {0, 1}, abi.FuncBodyRead: {1, 2},
	abi.FuncDNSLookup: {3, 4}, abi.FuncDNSLookupMany: {3, 4}, abi.FuncKVGet: {2, 3},
}

// FuzzHostFuncs calls the host functions with arguments as a guest passes
// them: any 32-bit value for a pointer, a length or an index, any bits for
// an i64 or f64, in a real wazero memory whose contents the fuzzer also
// picks, at the data stage, at another stage, or while configuring. A
// guest controls all of this, so the host must never panic, must answer a
// length or one of the ABI's error codes, must write nowhere but the
// buffer it was given and no more than it said, and what it writes must
// be the header field, header, body part, stored value or DNS answer
// asked for.
func FuzzHostFuncs(f *testing.F) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	f.Cleanup(func() { rt.Close(ctx) })
	mod, err := rt.Instantiate(ctx, memoryModule)
	if err != nil {
		f.Fatal(err)
	}
	dns := dnstest.Start(f, `
example.test.     300 IN TXT "v=spf1 -all"
example.test.     300 IN MX 10 mx.example.test.
mx.example.test.  300 IN A 192.0.2.1
mx.example.test.  300 IN AAAA 2001:db8::1
`)
	res, err := resolver.New(resolver.Config{Nameservers: []string{dns.Addr()}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		f.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// Seeds: the guest's memory starts with names at fixed offsets, and
	// each function is called once as a well-behaved guest would.
	memory := []byte("Subject\x00X-Key\x00example.test\x00hits")
	f64one := binary.LittleEndian.AppendUint64(nil, math.Float64bits(1))
	ttl := binary.LittleEndian.AppendUint64(nil, 1000)
	one := binary.LittleEndian.AppendUint64(nil, 1)
	call := func(name string, args ...byte) []byte {
		for i, fn := range hostFuncTable {
			if fn.name == name {
				return append([]byte{byte(i)}, args...)
			}
		}
		f.Fatalf("no host function %s", name)
		return nil
	}
	lookupNames := abi.AppendStrings(nil, []string{"example.test", "mx.example.test"})
	memory = append(memory, lookupNames...) // at offset 31
	seeds := [][]byte{
		call(abi.FuncLog, 0, 0, 0, 0, 7, 0),                               // "Subject"
		call(abi.FuncHeaderGet, 0, 0, 7, 0, 0, 0, 0x00, 0x10, 0x00, 0x01), // Subject 0 into 4096, 256 bytes
		call(abi.FuncHeaders, 0x00, 0x10, 0x00, 0x04),                     // into 4096, 1024 bytes
		call(abi.FuncBodySize),
		call(abi.FuncBodyRead, 0, 0, 0x00, 0x10, 8, 0),                                                   // from 0 into 4096, 8 bytes
		call(abi.FuncDNSLookup, 16, 0, 14, 0, 12, 0, 0x00, 0x10, 0x00, 0x02),                             // TXT example.test
		call(abi.FuncDNSLookupMany, 15, 0, 31, 0, byte(len(lookupNames)), 0, 0x00, 0x10, 0x00, 0x02),     // MX of both names
		call(abi.FuncKVSet, append([]byte{8, 0, 5, 0, 0, 0, 7, 0}, ttl...)...),                           // X-Key = "Subject"
		call(abi.FuncKVGet, 8, 0, 5, 0, 0x00, 0x10, 64, 0),                                               // X-Key
		call(abi.FuncKVIncr, append(append([]byte{27, 0, 4, 0}, one...), append(ttl, 0x00, 0x10)...)...), // hits += 1, into 4096
		call(abi.FuncKVDelete, 8, 0, 5, 0),                                                               // X-Key
		call(abi.FuncCounterAdd, append([]byte{27, 0, 4, 0}, f64one...)...),                              // hits 1
		call(abi.FuncHeaders, 0xff, 0xff, 0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),                // past the end of memory
	}
	var all []byte
	for _, call := range seeds {
		all = append(all, call...)
		for stage := range uint8(3) {
			f.Add([]byte(testMessage), memory, call, stage)
		}
	}
	f.Add([]byte(testMessage), memory, all, uint8(2))
	mem := make([]byte, 1<<16)

	f.Fuzz(func(t *testing.T, msg, memory, calls []byte, stage uint8) {
		h := &hostFuncs{
			plugin: "fuzz", caps: abi.CapHeaders | abi.CapBody | abi.CapDNS | abi.CapKV | abi.CapMetrics,
			lookups: 3, logger: logger, resolver: res,
			kv: NewMemoryKV(MemoryKVConfig{MaxBytes: 4096}), counters: noCounters{},
		}
		m := NewMessage(msg)
		// header_get finds in the parsed header what the SDK's own
		// parser finds in the block; an empty name finds nothing.
		// Names match in ASCII case only (RFC 5322 §3.6.8).
		asciiLower := func(s string) string {
			b := []byte(s)
			for i, c := range b {
				if 'A' <= c && c <= 'Z' {
					b[i] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
		seen := map[string]uint32{}
		for _, f := range abi.ParseHeader(m.Header.Bytes()) {
			if f.Name == "" {
				continue // " : x": no name to ask for
			}
			n := seen[asciiLower(f.Name)]
			seen[asciiLower(f.Name)]++
			if v, ok := m.field(f.Name, n); !ok || v != f.Value {
				t.Fatalf("header_get(%q, %d) = %q, %v; abi.ParseHeader: %q", f.Name, n, v, ok, f.Value)
			}
		}
		if _, ok := m.field("", 0); ok {
			t.Fatal(`header_get("") found a field`)
		}
		callCtx := ctx
		switch stage % 3 {
		case 1: // another stage: no message
			callCtx = context.WithValue(ctx, callKey{}, &callState{deadline: time.Now().Add(2 * time.Second), lookups: 3})
		case 2:
			callCtx = context.WithValue(ctx, callKey{}, &callState{msg: m, deadline: time.Now().Add(2 * time.Second), lookups: 3})
		}
		clear(mem)
		copy(mem, memory)
		if !mod.Memory().Write(0, mem) {
			t.Fatal("cannot set up the guest's memory")
		}

		for n := 0; len(calls) > 0 && n < 16; n++ {
			fn := hostFuncTable[int(calls[0])%len(hostFuncTable)]
			calls = calls[1:]
			stack := make([]uint64, max(len(fn.params), len(fn.results)))
			for i, p := range fn.params {
				stack[i], calls = argument(p, calls)
			}
			args := append([]uint64(nil), stack...)
			before, _ := mod.Memory().Read(0, 1<<16)
			before = bytes.Clone(before)

			fn.fn(h, callCtx, mod, stack)

			after, _ := mod.Memory().Read(0, 1<<16)
			checkHostCall(t, fn, args, stack, before, after, m, stage%3 == 2, h)
		}
	})
}

// argument takes one argument of type vt from the fuzzer's bytes: an i32
// is two bytes, so that most values fall inside the one page of memory,
// or, after 0xffff, four more bytes for any 32-bit value.
func argument(vt api.ValueType, b []byte) (uint64, []byte) {
	take := func(n int) []byte {
		var buf [8]byte
		k := copy(buf[:n], b)
		b = b[k:]
		return buf[:]
	}
	switch vt {
	case api.ValueTypeI32:
		v := uint32(binary.LittleEndian.Uint16(take(2)))
		if v == 0xffff {
			v = binary.LittleEndian.Uint32(take(4))
		}
		return api.EncodeU32(v), b
	default: // i64, f64: the bits as given
		return binary.LittleEndian.Uint64(take(8)), b
	}
}

func checkHostCall(t *testing.T, fn hostFunc, args, stack []uint64, before, after []byte, m *Message, data bool, h *hostFuncs) {
	t.Helper()
	if len(fn.results) == 0 {
		if !bytes.Equal(before, after) {
			t.Fatalf("%s%v changed the guest's memory", fn.name, args)
		}
		return
	}
	r := api.DecodeI32(stack[0])
	if r < 0 && abi.ErrorText(r)[:7] == "unknown" {
		t.Fatalf("%s%v = %d, not an error code", fn.name, args, r)
	}
	buf, writes := answerBuffer[fn.name]
	lo, hi := 0, 0
	if fn.name == abi.FuncKVIncr && r == 0 {
		// The new value, as 8 bytes at out_ptr.
		lo, hi = int(uint32(args[4])), int(uint32(args[4]))+8
		if hi > 1<<16 {
			t.Fatalf("%s%v = 0 with out_ptr outside memory", fn.name, args)
		}
	}
	if writes && r > 0 {
		ptr, capacity := uint32(args[buf[0]]), uint32(args[buf[1]])
		if uint64(ptr)+uint64(capacity) > 1<<16 {
			t.Fatalf("%s%v = %d with a buffer outside memory", fn.name, args, r)
		}
		if uint32(r) <= capacity {
			lo, hi = int(ptr), int(ptr)+int(r)
		}
	}
	if !bytes.Equal(before[:lo], after[:lo]) || !bytes.Equal(before[hi:], after[hi:]) {
		t.Fatalf("%s%v = %d wrote outside [%d, %d)", fn.name, args, r, lo, hi)
	}
	if hi == lo {
		return
	}
	got := after[lo:hi]
	arg := func(i int) []byte { return before[uint32(args[i]):][:uint32(args[i+1])] }
	var want []byte
	switch fn.name {
	case abi.FuncHeaderGet:
		v, _ := m.field(string(arg(0)), uint32(args[2]))
		want = []byte(v)
	case abi.FuncHeaders:
		want = m.Header.Bytes()
	case abi.FuncBodyRead:
		off := uint64(uint32(args[0]))
		want = m.Body[off:min(uint64(len(m.Body)), off+uint64(uint32(args[2])))]
	case abi.FuncKVGet:
		want, _, _ = h.kv.Get(context.Background(), h.plugin, string(arg(0)))
	case abi.FuncKVIncr:
		stored, _, _ := h.kv.Get(context.Background(), h.plugin, string(arg(0)))
		n, err := strconv.ParseInt(string(stored), 10, 64)
		if err != nil {
			t.Fatalf("%s%v = 0 but the store holds %q, not a counter", fn.name, args, stored)
		}
		want = binary.LittleEndian.AppendUint64(nil, uint64(n))
	case abi.FuncDNSLookupMany:
		answers, err := abi.DecodeStrings(got)
		if err != nil {
			t.Fatalf("%s%v wrote %q, not a list of strings: %v", fn.name, args, got, err)
		}
		for _, a := range answers {
			if _, _, err := abi.DecodeLookupAnswer([]byte(a)); err != nil {
				t.Fatalf("%s%v wrote the answer %q: %v", fn.name, args, a, err)
			}
		}
		return
	case abi.FuncDNSLookup:
		if _, err := abi.DecodeStrings(got); err != nil {
			t.Fatalf("%s%v wrote %q, not a list of strings: %v", fn.name, args, got, err)
		}
		return
	}
	if !data && (fn.name == abi.FuncHeaderGet || fn.name == abi.FuncHeaders || fn.name == abi.FuncBodyRead) {
		t.Fatalf("%s%v = %d outside the data stage", fn.name, args, r)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s%v wrote %q, want %q", fn.name, args, got, want)
	}
}
