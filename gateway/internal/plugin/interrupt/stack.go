package interrupt

import (
	"fmt"
	"slices"
)

// The stack accounting. wazero runs a module's calls on a stack of its own
// that grows, by doubling, up to about 400 MB before it reports a stack
// overflow, outside the memory limit: a plugin that recurses without end
// would take the gateway's memory with it. So Instrument also makes a
// module count what its calls put on that stack. A budget, a mutable
// global exported as StackGlobal, starts at the bytes given to Instrument;
// the entry of a counted function takes an estimate of its frame from it,
// or traps if the budget is short, and every way out of the function (its
// end, a branch to its outermost block, return, return_call) gives it
// back. The body of a counted function is wrapped in a block, so that a
// branch out of the function reaches the code that gives the frame back;
// only return needs code of its own.
//
// A function that calls no other and whose estimate is at most LeafFrame
// is not counted, which spares the small functions called most often: it
// can only be the top frame, so it adds at most LeafFrame to the stack.

const (
	// StackGlobal is the name under which an instrumented module exports
	// its stack budget, a mutable i32. The module sets it to StackTrapped
	// when it traps for want of budget, so that the host can tell that
	// trap from others.
	StackGlobal = "sluice_stack"
	// DefaultStackBudget is the usual budget, in bytes: what a module's
	// calls may put on wazero's stack at once, by the estimates. Go
	// plugins need 2 to 2.5 MiB of it to start.
	DefaultStackBudget = 4 << 20
	// MinStackBudget and MaxStackBudget bound the budgets the gateway
	// takes (CheckStackBudget). The stack the largest needs, 320 MiB,
	// is under wazero's own ceiling of 400 MB, and every estimate fits an
	// i32 constant.
	MinStackBudget = 256 << 10
	MaxStackBudget = 256 << 20
	// StackTrapped is the budget's value after the module trapped because
	// a call would have gone over it.
	StackTrapped = ^uint32(0)
	// LeafFrame is the largest estimate of a function that is not
	// counted because it calls no other.
	LeafFrame = 1 << 10

	// frameBase and valueBytes make the estimate of a frame from what the
	// function may hold across a call (frameSize). They are set from
	// wazero v1.12's compiler on amd64, which gives each value it spills
	// a slot of its own for the whole call: the frames measured (a
	// function with many locals live across a call, with a deep operand
	// stack, or redefining its locals between many calls) needed 12 to 24
	// bytes per instruction, and the smallest frame 190 bytes.
	frameBase  = 256
	valueBytes = 48
)

// CheckStackBudget says why a budget is not one the gateway takes: it
// must be a power of two from MinStackBudget to MaxStackBudget. A power of
// two, because wazero grows a stack by doubling from 10 KiB (plus the frame
// that made it grow): the stack that holds the calls of a budget of 2ⁿ
// bytes, and a leaf of LeafFrame on top, is 10 KiB × 2ⁿ⁻¹³ = 1.25 × 2ⁿ,
// the same share of every budget, so that the memory bound is a multiple
// of the budget. A budget just over a step (5 MiB) would take a stack of
// twice its size.
func CheckStackBudget(n uint64) error {
	if n < MinStackBudget || n > MaxStackBudget || n&(n-1) != 0 {
		return fmt.Errorf("must be a power of two from %dKiB to %dMiB", MinStackBudget>>10, MaxStackBudget>>20)
	}
	return nil
}

// frameSize estimates the bytes a function's frame takes on wazero's
// stack, from its locals (parameters included) and the values its code
// may define (scanner.values): each of those may be spilled to a slot of
// its own. An estimate over the budget is cut to just over it: the
// function always traps.
func (m *module) frameSize(locals, values uint64) uint32 {
	return uint32(min(frameBase+valueBytes*(locals+values), uint64(m.budget)+1))
}

// stackGlobal is the index of the budget's global.
func (m *module) stackGlobal() uint32 { return m.globals + 2 }

// addBlockTypes assigns a block type to each function type with more than
// one result: a counted function's body is wrapped in a block of its
// results, and only a type index can give more than one.
func (m *module) addBlockTypes() {
	m.blockTypes = map[uint32]uint32{}
	next := uint32(len(m.types)) + 1 // after the yield function's
	for i, t := range m.types {
		if len(t.results) > 1 {
			m.blockTypes[uint32(i)] = next
			next++
		}
	}
}

// blockType is the block type of a block with the results of function
// type typ.
func (m *module) blockType(typ uint32) []byte {
	results := m.types[typ].results
	switch len(results) {
	case 0:
		return []byte{0x40}
	case 1:
		return results
	}
	return appendSLEB(nil, int64(m.blockTypes[typ]))
}

// stackEntry returns the code at the entry of a counted function with an
// estimate of frame bytes:
//
//	if budget < frame { budget = StackTrapped; unreachable }
//	budget -= frame
func (m *module) stackEntry(frame uint32) []byte {
	g := uint64(m.stackGlobal())
	b := appendULEB([]byte{0x23}, g)              // global.get budget
	b = appendSLEB(append(b, 0x41), int64(frame)) // i32.const frame
	b = append(b, 0x49, 0x04, 0x40, 0x41, 0x7f)   // i32.lt_u; if; i32.const -1
	b = appendULEB(append(b, 0x24), g)            //   global.set budget
	b = append(b, 0x00, 0x0b)                     //   unreachable; end
	return append(b, m.stackAdjust(frame, 0x6b)...)
}

// stackAdjust returns budget = budget op frame, op being i32.add or
// i32.sub.
func (m *module) stackAdjust(frame uint32, op byte) []byte {
	g := uint64(m.stackGlobal())
	b := appendULEB([]byte{0x23}, g)              // global.get budget
	b = appendSLEB(append(b, 0x41), int64(frame)) // i32.const frame
	b = appendULEB(append(b, op, 0x24), g)        // op; global.set budget
	return b
}

// stackExits adds to edits, which are in order, the code that gives a
// counted function's frame back: before each return and return_call at
// the offsets exits, and after the end of the block that wraps its body,
// at the end of its code, followed by the function's own end.
func (m *module) stackExits(edits []edit, exits []int, codeLen int, frame uint32) []edit {
	back := m.stackAdjust(frame, 0x6a)
	for _, at := range exits {
		edits = append(edits, edit{at: at, end: at, put: back})
	}
	edits = append(edits, edit{at: codeLen, end: codeLen, put: append(back[:len(back):len(back)], 0x0b)})
	slices.SortStableFunc(edits, func(a, b edit) int { return a.at - b.at })
	return edits
}
