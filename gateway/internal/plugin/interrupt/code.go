package interrupt

import (
	"errors"
	"fmt"
)

// errAmbiguous marks code that wazero decodes otherwise than the
// specification: Instrument refuses it.
var errAmbiguous = errors.New("wazero would decode it otherwise")

// edit replaces the bytes [at, end) of some code with put. Instrumenting
// makes two kinds: a check inserted (at == end), and a function index
// rewritten because the yield import shifts the module's own functions.
type edit struct {
	at, end int
	put     []byte
}

// applyEdits appends src with the edits, which are in order, to dst.
func applyEdits(dst, src []byte, edits []edit) []byte {
	prev := 0
	for _, e := range edits {
		dst = append(dst, src[prev:e.at]...)
		dst = append(dst, e.put...)
		prev = e.end
	}
	return append(dst, src[prev:]...)
}

// editedLen is the length of src after the edits.
func editedLen(src []byte, edits []edit) int {
	n := len(src)
	for _, e := range edits {
		n += len(e.put) - (e.end - e.at)
	}
	return n
}

// scanner decodes instructions, from function bodies and from constant
// expressions, and records the edits they need. It decodes every
// instruction's immediates, because a loop opcode's byte value also
// appears inside immediates; it refuses opcodes it does not know rather
// than guess their length.
type scanner struct {
	r     *reader
	m     *module // for the types of functions and blocks
	funcs funcIndices
	check []byte // the check to insert at the top of each loop body
	edits []edit
	// scratch is the index of the local a function body gets if it has
	// bulk instructions (see bulkGuard); guard is that guard, once made.
	// Constant expressions have neither.
	scratch *uint32
	guard   []byte
}

// funcIndices maps the input's function indices to the output's: the
// yield import goes after the module's imported functions, so each
// function the module defines moves up by one.
type funcIndices struct{ imported uint32 }

func (f funcIndices) remap(i uint32) uint32 {
	if i >= f.imported {
		return i + 1
	}
	return i
}

// yield is the index of the added import.
func (f funcIndices) yield() uint32 { return f.imported }

// funcIndex reads a function index, rewrites it if it moves, and returns
// it as it was.
func (s *scanner) funcIndex() uint32 {
	at := s.r.off
	i := s.r.u32()
	if s.r.err == nil && s.funcs.remap(i) != i {
		s.edits = append(s.edits, edit{at: at, end: s.r.off, put: appendULEB(nil, uint64(s.funcs.remap(i)))})
	}
	return i
}

// funcType returns the type index of function i (of the input), or an
// index past the types if there is no such function: the compiler refuses
// that module later.
func (m *module) funcType(i uint32) uint32 {
	if i < uint32(len(m.importTypes)) {
		return m.importTypes[i]
	}
	if i -= uint32(len(m.importTypes)); i < uint32(len(m.funcTypes)) {
		return m.funcTypes[i]
	}
	return ^uint32(0)
}

// results returns the number of results of function type typ, 0 for a
// type that does not exist.
func (s *scanner) results(typ uint32) uint64 {
	if typ < uint32(len(s.m.types)) {
		return uint64(len(s.m.types[typ].results))
	}
	return 0
}

// blockType skips a block type and returns how many values the block may
// define: its parameters, which become values of their own inside, and
// its results.
func (s *scanner) blockType() uint64 {
	t := blockType(s.r)
	if t >= 0 && t < int64(len(s.m.types)) {
		return uint64(s.m.types[t].params) + uint64(len(s.m.types[t].results))
	}
	return 1
}

// flow is what scanning a function's instructions found out about how it
// runs.
type flow struct {
	// calls says whether the function calls another function.
	calls bool
	// loopFirst says whether every run of the function reaches a loop
	// header before any call or branch, so that the loop's check also
	// guards the function's entry. Go's compiler starts most functions so.
	loopFirst bool
	// bulk says whether the function has bulk memory or table
	// instructions, which got a guard that needs the scratch local.
	bulk bool
	// values bounds how many values the function's code defines: one per
	// instruction, and for calls and blocks the results they give, and
	// for a local set inside loops one per loop, which may join the
	// value from an iteration to the value before the loop.
	values uint64
	// exits are the offsets of the function's return and return_call
	// instructions, which leave it without passing its end.
	exits []int
}

// needsEntryCheck says whether a function needs a check at entry: one that
// calls others can run unbounded work without a loop (a call tree of
// exponential size, or recursion that fits the stack), unless a loop check
// runs first anyway. A function without calls or loops runs at most its
// own length.
func (f flow) needsEntryCheck() bool { return f.calls && !f.loopFirst }

// expr decodes instructions up to the end that closes the expression or
// function body, inserting a check at the top of every loop body.
func (s *scanner) expr() flow {
	r := s.r
	var f flow
	// straight stays true while every instruction so far falls through to
	// the next: a loop reached then guards the function's entry.
	straight := true
	// loops has, for each open block, how many loops enclose it, itself
	// included.
	loops := []uint64{0}
	for depth := 1; depth > 0 && r.err == nil; {
		at := r.off
		op := r.byte()
		f.values++
		switch op {
		case 0x02: // block
			f.values += s.blockType()
			depth++
			loops = append(loops, loops[len(loops)-1])
		case 0x03: // loop
			f.values += s.blockType()
			depth++
			loops = append(loops, loops[len(loops)-1]+1)
			if r.err == nil {
				s.edits = append(s.edits, edit{at: r.off, end: r.off, put: s.check})
			}
			if straight {
				f.loopFirst = true
			}
			straight = false
		case 0x04: // if
			f.values += s.blockType()
			depth++
			loops = append(loops, loops[len(loops)-1])
			straight = false
		case 0x0b: // end
			depth--
			loops = loops[:max(len(loops)-1, 1)]
			straight = false
		case 0x05: // else
			straight = false
		case 0x0f: // return
			f.exits = append(f.exits, at)
			straight = false
		case 0x21, 0x22: // local.set, local.tee
			r.u32()
			f.values += loops[len(loops)-1]
		case 0x0c, 0x0d: // br, br_if
			r.u32()
			straight = false
		case 0x0e: // br_table: a vector of labels, then the default
			n := r.count()
			for i := uint32(0); i <= n && r.err == nil; i++ {
				r.u32()
			}
			straight = false
		case 0x10, 0x12: // call, return_call
			f.values += s.results(s.m.funcType(s.funcIndex()))
			if op == 0x12 {
				f.exits = append(f.exits, at)
			}
			f.calls, straight = true, false
		case 0x11, 0x13: // call_indirect, return_call_indirect: type, table
			f.values += s.results(r.u32())
			r.u32()
			if op == 0x13 {
				f.exits = append(f.exits, at)
			}
			f.calls, straight = true, false
		case 0xd2: // ref.func
			s.funcIndex()
		case 0xfc:
			if isBulk(miscImmediates(r)) && s.scratch != nil && r.err == nil {
				if s.guard == nil {
					s.guard = bulkGuard(*s.scratch, s.funcs.yield())
				}
				s.edits = append(s.edits, edit{at: at, end: at, put: s.guard})
				f.bulk = true
			}
		default:
			plainImmediates(r, op)
		}
	}
	return f
}

// plainImmediates skips the immediates of an instruction that neither
// branches nor refers to a function.
func plainImmediates(r *reader, op byte) {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x1a || op == 0x1b:
		// unreachable, nop, drop, select
	case op == 0x1c: // select with types
		n := r.count()
		for i := uint32(0); i < n && r.err == nil; i++ {
			valType(r)
		}
	case op >= 0x20 && op <= 0x26:
		// local.get/set/tee, global.get/set, table.get/set: one index
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		memArg(r)
	case op == 0x3f || op == 0x40: // memory.size, memory.grow: a memory index
		r.u32()
	case op == 0x41: // i32.const
		r.skipLEB(32)
	case op == 0x42: // i64.const
		r.skipLEB(64)
	case op == 0x43: // f32.const
		r.bytes(4)
	case op == 0x44: // f64.const
		r.bytes(8)
	case op >= 0x45 && op <= 0xc4:
		// numeric instructions, sign extension included: no immediates
	case op == 0xd0: // ref.null
		refType(r)
	case op == 0xd1: // ref.is_null
	case op == 0xfd:
		vectorImmediates(r)
	case op == 0xfe:
		atomicImmediates(r)
	default:
		r.failf("unknown opcode %#02x", op)
	}
}

// miscImmediates skips a 0xFC instruction (saturating truncation, bulk
// memory and table instructions) and returns which it is.
func miscImmediates(r *reader) uint32 {
	op := r.u32()
	switch {
	case op <= 7: // trunc_sat
	case op == 8: // memory.init: data segment, memory
		r.u32()
		r.u32()
	case op == 9, op == 11, op == 13, op >= 15 && op <= 17:
		// data.drop, memory.fill, elem.drop, table.grow/size/fill: one index
		r.u32()
	case op == 10, op == 12, op == 14:
		// memory.copy, table.init, table.copy: two indices
		r.u32()
		r.u32()
	default:
		r.failf("unknown opcode 0xfc %d", op)
	}
	return op
}

// isBulk says whether a 0xFC instruction takes time in proportion to a
// length operand, which is on top of the stack: memory.init, memory.copy,
// memory.fill, table.init, table.copy, table.grow and table.fill.
func isBulk(op uint32) bool {
	return op == 8 || op == 10 || op == 11 || op == 12 || op == 14 || op == 15 || op == 17
}

// bulkLimit is the length above which a bulk instruction yields first: a
// 64 KiB copy takes some microseconds, so the yield costs under 1%.
const bulkLimit = 64 << 10

// bulkGuard returns the code inserted before a bulk instruction: it
// yields before a long one, so that a loop of long copies cannot hold up
// the garbage collector for YieldEvery of them. The length stays on the
// stack; scratch is an i32 local added to the function for it.
//
//	if length > bulkLimit { yield() }
func bulkGuard(scratch, yield uint32) []byte {
	b := appendULEB([]byte{0x22}, uint64(scratch))   // local.tee scratch
	b = appendULEB(append(b, 0x20), uint64(scratch)) // local.get scratch
	b = appendSLEB(append(b, 0x41), bulkLimit)       // i32.const bulkLimit
	b = append(b, 0x4b, 0x04, 0x40, 0x10)            // i32.gt_u; if; call
	b = appendULEB(b, uint64(yield))                 //   yield
	return append(b, 0x0b)                           // end
}

// vectorImmediates skips a 0xFD (SIMD) instruction. Its opcode is a u32
// in LEB128, but wazero reads one byte: opcodes from 0x80 decode the same
// both ways only in their shortest form, two bytes of which the second is
// 1 (read by wazero as a nop). Any other form is refused, because wazero
// would decode what follows differently, and could find a loop there
// that Instrument did not see.
func vectorImmediates(r *reader) {
	at := r.off
	op := r.u32()
	if r.err == nil && (op >= 0x80) != (r.off-at == 2) || op > 0xff {
		r.fail(fmt.Errorf("SIMD opcode %d at offset %d is not in its shortest form: %w", op, at, errAmbiguous))
		return
	}
	switch {
	case op <= 0x0b, op == 0x5c, op == 0x5d: // loads, store, load_zero
		memArg(r)
	case op == 0x0c, op == 0x0d: // v128.const, i8x16.shuffle
		r.bytes(16)
	case op >= 0x15 && op <= 0x22: // extract_lane, replace_lane
		r.byte()
	case op >= 0x54 && op <= 0x5b: // load_lane, store_lane
		memArg(r)
		r.byte()
	default:
		// Every other SIMD instruction has no immediates. Numbers
		// unassigned have none either; the compiler refuses them later.
	}
}

// atomicImmediates skips a 0xFE (threads) instruction.
func atomicImmediates(r *reader) {
	switch op := r.u32(); {
	case op == 0x03: // atomic.fence: a reserved byte
		r.byte()
	case op <= 0x02, op >= 0x10 && op <= 0x4e: // notify, wait, loads, stores, read-modify-writes
		memArg(r)
	default:
		r.failf("unknown opcode 0xfe %d", op)
	}
}

// memArg skips a memory argument: alignment, a memory index if the
// alignment's bit 6 says so (multiple memories), and the offset.
func memArg(r *reader) {
	if align := r.u32(); align&0x40 != 0 {
		r.u32()
	}
	r.uleb(64)
}

// blockType skips a block type: empty, a value type, or a type index,
// all read as one signed 33-bit number; or a reference type of the typed
// function references proposal, which wazero decodes: 0x63 or 0x64 and a
// heap type, another such number.
func blockType(r *reader) int64 {
	t := r.sleb(33)
	switch {
	case t >= 0: // a type index
	case t == -0x40: // empty
	case t == -0x1d || t == -0x1c: // (ref null ht), (ref ht)
		r.sleb(33)
	case t >= -0x40 && isValType(byte(t&0x7f)): // one byte
	default:
		r.failf("unknown block type %d", t)
	}
	return t
}

func valType(r *reader) {
	if t := r.byte(); r.err == nil && !isValType(t) {
		r.failf("unknown value type %#02x", t)
	}
}

func refType(r *reader) {
	if t := r.byte(); r.err == nil && t != 0x70 && t != 0x6f {
		r.failf("unknown reference type %#02x", t)
	}
}

// isValType says whether t is i32, i64, f32, f64, v128, funcref,
// externref, or exnref (of exception handling, whose instructions are not
// decoded, but which wazero accepts as a local's type).
func isValType(t byte) bool {
	return t >= 0x7b && t <= 0x7f || t == 0x70 || t == 0x6f || t == 0x69
}
