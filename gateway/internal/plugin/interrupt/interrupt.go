// Package interrupt makes a WebAssembly module stoppable from outside at
// little cost. Instrument rewrites a module so that it runs a check at the
// top of every loop body and at the entry of functions that call others.
// The check reads a flag, a mutable global the module exports: once the
// host sets it to 1, the module traps at its next check. Setting the flag
// from a timer gives a per-call deadline that costs a few instructions per
// loop iteration, where wazero's WithCloseOnContextDone calls into Go at
// every back-edge.
//
// Every YieldEvery checks, and before a bulk memory or table instruction
// longer than 64 KiB, the module also calls a function the host provides,
// which returns at once. Machine code compiled from WebAssembly cannot be
// preempted by the Go runtime, so without these calls a guest in a long
// loop would hold up every stop-the-world pause of the garbage collector,
// and with it the very timer that is to set the flag: the process would
// hang.
//
// Code cannot run unboundedly without passing a check: it either iterates
// (a loop, checked at its header), or makes calls (checked at the entry of
// every function that calls, or by a loop check that comes first). Host
// functions are outside the module; the host must bound those itself.
package interrupt

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// Global is the name under which an instrumented module exports its
	// interrupt flag: a mutable i32, 0 at instantiation. Set to 1, it
	// makes the module trap (unreachable) at its next check.
	Global = "sluice_interrupt"
	// Start is the name under which an instrumented module exports the
	// function its start section named. The start section is removed,
	// because a start function runs while the module is instantiated,
	// before the host can reach the flag: the host calls Start itself,
	// right after instantiation and under a deadline.
	Start = "sluice_start"
	// YieldModule and YieldFunc name the function an instrumented module
	// imports and calls every YieldEvery checks. The host provides it as
	// a Go function of type () → () that returns at once: calling it is
	// what matters, because a goroutine can be stopped only in Go code.
	YieldModule = "sluice_interrupt"
	YieldFunc   = "yield"
	// YieldEvery is how many checks a module runs between two calls of
	// the yield function: rarely enough to cost little (a call into Go
	// costs about 40 ns, a few dozen checks), often enough that a
	// stop-the-world pause waits for at most a thousand checks' worth of
	// work.
	YieldEvery = 1000
)

// Section ids of the WebAssembly binary format.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secDataCount = 12
	secTag       = 13
)

// order is the position each known section id must have in a module.
var order = map[byte]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, 5: 5, secTag: 6, secGlobal: 7, secExport: 8,
	secStart: 9, secElement: 10, secDataCount: 11, secCode: 12, 11: 13,
}

type section struct {
	id      byte
	content []byte // aliases the input
}

// module is what Instrument needs to know of a module.
type module struct {
	sections []section
	// types has each function type; the yield function's type is the
	// next, then the block types of the stack accounting (blockTypes).
	types []funcType
	// importTypes and funcTypes have the type of each function the module
	// imports and defines.
	importTypes, funcTypes []uint32
	funcs                  funcIndices
	globals                uint32  // imported and defined: the flag is the next
	start                  *uint32 // the start function, if any
	budget                 uint32  // the stack budget's initial value (stack.go)
	// blockTypes maps a function type with more than one result to the
	// type, added, of a block with those results and no parameters: the
	// block that wraps a counted function's body.
	blockTypes map[uint32]uint32
}

// funcType is what instrumenting needs of a function type.
type funcType struct {
	params  uint32
	results []byte // the value types, one byte each
}

// Instrument returns the module with interrupt checks inserted, the flag
// exported as Global, the yield function imported (YieldModule, YieldFunc),
// the start function, if any, exported as Start, and its calls held to a
// stack budget of stackBudget bytes (stack.go), at most MaxStackBudget. The
// result depends only on the input and the budget, so a compilation cache
// keyed on it works: a module instrumented with two budgets is two modules.
//
// The functions the module defines move up one index, after the added
// import; Instrument rewrites every reference to them (calls, ref.func,
// exports, element segments, the "name" section). Other custom sections
// are kept, except those that point at code offsets, which the inserted
// checks move: DWARF (".debug_*"), source maps ("sourceMappingURL",
// "external_debug_info") and relocations ("linking", "reloc.*"). Custom
// sections are only for tools: one that is malformed (a name that is not
// UTF-8, a "name" section that does not read whole) is dropped too.
//
// Instrument decodes what it must, and refuses what it cannot decode (an
// unknown opcode or section), code that wazero would decode otherwise than
// the specification, counts that wazero would allocate before reading
// them, a module that already uses the names above, and anything
// malformed. It does not validate the module otherwise: compile the result
// to do that. Its errors read after the module's name ("x.wasm is not a
// WebAssembly module").
func Instrument(wasm []byte, stackBudget uint32) ([]byte, error) {
	if stackBudget > MaxStackBudget {
		return nil, fmt.Errorf("cannot be instrumented with a stack budget of %d bytes, over the limit of %d", stackBudget, MaxStackBudget)
	}
	if !bytes.HasPrefix(wasm, header[:4]) {
		return nil, errors.New("is not a WebAssembly module")
	}
	if !bytes.HasPrefix(wasm, header) {
		return nil, fmt.Errorf("is in binary format version %x, not 1 (a component, or a newer format)", wasm[4:min(8, len(wasm))])
	}
	m, err := parse(wasm)
	if err == nil {
		m.budget = stackBudget
		var out []byte
		if out, err = m.write(len(wasm)); err == nil {
			return out, nil
		}
	}
	var taken reservedError
	if errors.As(err, &taken) {
		return nil, fmt.Errorf("already uses %s, a name reserved for the gateway's interrupt check", taken.what)
	}
	return nil, fmt.Errorf("cannot be instrumented: %w", err)
}

// maxLocals bounds the locals of a function, parameters included, as the
// JavaScript embedding does. A count costs a few bytes to declare, and
// wazero v1.12 allocates what it declares when it compiles: 4 billion
// locals in a 29-byte module exhaust the gateway's memory.
const maxLocals = 50000

var errLimit = fmt.Errorf("over the limit of %d", maxLocals)

// reservedError is a name the module must not use.
type reservedError struct{ what string }

func (e reservedError) Error() string { return e.what + " is reserved" }

var header = []byte("\x00asm\x01\x00\x00\x00")

// parse reads the sections of a module that starts with header, and the
// counts that instrumenting needs.
func parse(wasm []byte) (*module, error) {
	r := &reader{b: wasm, off: len(header)}
	m := &module{}
	last := 0
	for !r.done() {
		s := section{id: r.byte()}
		s.content = r.bytes(uint64(r.u32()))
		if r.err != nil {
			return nil, fmt.Errorf("section %d: %w", s.id, r.err)
		}
		if s.id != secCustom {
			pos, ok := order[s.id]
			if !ok {
				return nil, fmt.Errorf("unknown section id %d", s.id)
			}
			if pos <= last {
				return nil, fmt.Errorf("section %d is out of order or repeated", s.id)
			}
			last = pos
		}
		if err := m.read(s); err != nil {
			return nil, err
		}
		m.sections = append(m.sections, s)
	}
	return m, r.err
}

// read takes what instrumenting needs from one section, and checks the
// parts that instrumenting rewrites.
func (m *module) read(s section) error {
	r := &reader{b: s.content}
	var what string
	switch s.id {
	case secCustom: // read when written: a malformed one is dropped
	case secType:
		what = "type section"
		m.types = readTypes(r)
	case secFunction:
		what = "function section"
		n := r.count()
		for i := uint32(0); i < n && r.err == nil; i++ {
			m.funcTypes = append(m.funcTypes, r.u32())
		}
		end(r)
	case secImport:
		what = "import section"
		m.readImports(r)
	case secTable:
		what = "table section"
		readTables(r)
	case secGlobal:
		what = "global section"
		m.globals += r.count()
	case secExport:
		what = "export section"
		readExports(r)
	case secStart:
		what = "start section"
		start := r.u32()
		m.start = &start
		end(r)
	case secDataCount:
	default: // the other sections are vectors
		what = fmt.Sprintf("section %d", s.id)
		r.count()
	}
	if r.err != nil {
		return fmt.Errorf("%s: %w", what, r.err)
	}
	return nil
}

// end checks that r has nothing left.
func end(r *reader) {
	if r.err == nil && !r.done() {
		r.failf("trailing bytes")
	}
}

// readTypes returns the types, all of which must be function types.
func readTypes(r *reader) []funcType {
	n := r.count()
	var types []funcType
	for i := uint32(0); i < n && r.err == nil; i++ {
		if form := r.byte(); form != 0x60 {
			r.failf("type %d is not a function type (form %#02x)", i, form)
		}
		var t funcType
		t.params = r.count()
		for j := uint32(0); j < t.params && r.err == nil; j++ {
			valType(r)
		}
		results := r.count()
		at := r.off
		for j := uint32(0); j < results && r.err == nil; j++ {
			valType(r)
		}
		if r.err == nil {
			t.results = r.b[at:r.off]
		}
		types = append(types, t)
	}
	end(r)
	return types
}

func (m *module) readImports(r *reader) {
	n := r.count()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if mod := r.name(); mod == YieldModule {
			r.fail(reservedError{"the import module name " + YieldModule})
		}
		r.name() // field
		switch kind := r.byte(); kind {
		case 0x00: // function: a type index
			m.importTypes = append(m.importTypes, r.u32())
			m.funcs.imported++
		case 0x01: // table: reference type, limits
			refType(r)
			limits(r)
		case 0x02: // memory
			limits(r)
		case 0x03: // global: value type, mutability
			valType(r)
			r.byte()
			m.globals++
		default:
			r.failf("import %d has unknown kind %#02x", i, kind)
		}
	}
	end(r)
}

// readTables refuses tables with an initialiser expression (from the
// function references proposal), whose function indices Instrument does
// not rewrite.
func readTables(r *reader) {
	n := r.count()
	for i := uint32(0); i < n && r.err == nil; i++ {
		refType(r)
		limits(r)
	}
	end(r)
}

// limits skips a table's or memory's limits: a flags byte (bit 0: has a
// maximum; bit 1: shared; bit 2: 64-bit), a minimum and maybe a maximum.
func limits(r *reader) {
	flags := r.byte()
	if flags > 7 {
		r.failf("unknown limits flags %#02x", flags)
		return
	}
	bits := uint(32)
	if flags&4 != 0 {
		bits = 64
	}
	r.uleb(bits)
	if flags&1 != 0 {
		r.uleb(bits)
	}
}

func readExports(r *reader) {
	n := r.count()
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := r.name()
		r.byte() // kind
		r.u32()  // index
		if r.err == nil && (name == Global || name == Start) {
			r.fail(reservedError{"the export name " + name})
		}
	}
	end(r)
}

// referencesCode says whether a custom section holds offsets into the code
// section, which instrumenting moves.
func referencesCode(name string) bool {
	return strings.HasPrefix(name, ".debug_") || strings.HasPrefix(name, "reloc.") ||
		name == "linking" || name == "sourceMappingURL" || name == "external_debug_info"
}

// write returns the instrumented module.
func (m *module) write(size int) ([]byte, error) {
	flag := m.globals // the next global indices
	fuel := flag + 1
	check := m.check(flag, fuel)
	m.addBlockTypes()
	out := make([]byte, 0, size+size/16)
	out = append(out, header...)
	// The module may lack a section that instrumenting adds to: add it
	// before the first section that comes after it.
	added := map[byte]bool{}
	addMissing := func(pos int) error {
		for _, id := range []byte{secType, secImport, secGlobal, secExport} {
			if !added[id] && pos > order[id] {
				content, err := m.rewrite(section{id: id}, check)
				if err != nil {
					return err
				}
				out = appendSection(out, id, content)
				added[id] = true
			}
		}
		return nil
	}
	// Sections missing at the end go before the custom sections there:
	// tools expect the "name" section last.
	last := -1
	for i, s := range m.sections {
		if s.id != secCustom {
			last = i
		}
	}
	if last < 0 {
		if err := addMissing(len(order) + 1); err != nil {
			return nil, err
		}
	}
	for i, s := range m.sections {
		if s.id != secCustom {
			if err := addMissing(order[s.id]); err != nil {
				return nil, err
			}
		}
		content, err := m.rewrite(s, check)
		if err != nil {
			return nil, err
		}
		if content != nil {
			out = appendSection(out, s.id, content)
		}
		added[s.id] = true
		if i == last {
			if err := addMissing(len(order) + 1); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// check returns the code inserted at each loop header and function entry:
//
//	fuel := fuel - 1
//	if fuel == 0 { fuel = YieldEvery; yield() }
//	if flag { unreachable }
func (m *module) check(flag, fuel uint32) []byte {
	b := appendULEB([]byte{0x23}, uint64(fuel))   // global.get fuel
	b = append(b, 0x41, 0x01, 0x6b, 0x24)         // i32.const 1; i32.sub; global.set
	b = appendULEB(b, uint64(fuel))               //   fuel
	b = appendULEB(append(b, 0x23), uint64(fuel)) // global.get fuel
	b = append(b, 0x45, 0x04, 0x40, 0x41)         // i32.eqz; if; i32.const
	b = appendSLEB(b, YieldEvery)                 //   YieldEvery
	b = appendULEB(append(b, 0x24), uint64(fuel)) //   global.set fuel
	b = appendULEB(append(b, 0x10), uint64(m.funcs.yield()))
	b = append(b, 0x0b)                           // end
	b = appendULEB(append(b, 0x23), uint64(flag)) // global.get flag
	return append(b, 0x04, 0x40, 0x00, 0x0b)      // if; unreachable; end
}

// rewrite returns a section's new content, nil to drop the section. A
// section with nil content is one the module lacks.
func (m *module) rewrite(s section, check []byte) ([]byte, error) {
	switch s.id {
	case secCustom:
		r := &reader{b: s.content}
		name := r.name()
		// wazero also refuses a custom section with nothing after its
		// name, which holds nothing anyway.
		if r.err != nil || !utf8.ValidString(name) || r.done() || referencesCode(name) {
			return nil, nil
		}
		if name == "name" {
			return m.nameSection(s.content, r.off), nil
		}
		return s.content, nil
	case secType:
		added := []byte{0x60, 0x00, 0x00} // () → (), the yield function's
		for i, t := range m.types {
			if _, ok := m.blockTypes[uint32(i)]; ok { // () → (t's results)
				added = append(appendULEB(append(added, 0x60, 0x00), uint64(len(t.results))), t.results...)
			}
		}
		return grow(s.content, nil, 1+uint32(len(m.blockTypes)), added), nil
	case secImport:
		yield := appendName(appendName(nil, YieldModule), YieldFunc)
		yield = appendULEB(append(yield, 0x00), uint64(len(m.types))) // a function of the type added
		return grow(s.content, nil, 1, yield), nil
	case secGlobal:
		return m.globalSection(s.content)
	case secExport:
		return m.exportSection(s.content)
	case secStart:
		return nil, nil // exported as Start instead
	case secElement:
		return m.elementSection(s.content)
	case secCode:
		return m.codeSection(s.content, check)
	}
	return s.content, nil
}

func appendSection(out []byte, id byte, content []byte) []byte {
	out = append(out, id)
	out = appendULEB(out, uint64(len(content)))
	return append(out, content...)
}

// grow returns a vector section's content (nil if the module has none)
// with the edits, the count raised by extra and the items added at the
// end. The edits are of the items, at offsets into content.
func grow(content []byte, edits []edit, extra uint32, items []byte) []byte {
	r := &reader{b: content}
	var n uint32
	if len(content) > 0 {
		n = r.u32()
	}
	edits = append([]edit{{at: 0, end: r.off, put: appendULEB(nil, uint64(n+extra))}}, edits...)
	out := make([]byte, 0, editedLen(content, edits)+len(items))
	out = applyEdits(out, content, edits)
	return append(out, items...)
}

// globalSection adds the flag and the fuel, and rewrites function indices
// in the initialisers.
func (m *module) globalSection(content []byte) ([]byte, error) {
	s := m.scanner(content, nil)
	if content != nil {
		n := s.r.count()
		for i := uint32(0); i < n && s.r.err == nil; i++ {
			valType(s.r)
			s.r.byte() // mutability
			s.expr()
		}
		end(s.r)
	}
	if s.r.err != nil {
		return nil, fmt.Errorf("global section: %w", s.r.err)
	}
	// All mutable i32s, initialised by a constant expression.
	added := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b} // the flag: i32.const 0
	added = append(added, 0x7f, 0x01, 0x41)
	added = append(appendSLEB(added, YieldEvery), 0x0b) // the fuel
	added = append(added, 0x7f, 0x01, 0x41)
	added = append(appendSLEB(added, int64(m.budget)), 0x0b) // the stack budget
	return grow(content, s.edits, 3, added), nil
}

// exportSection adds the flag and the start function, and rewrites
// function indices.
func (m *module) exportSection(content []byte) ([]byte, error) {
	s := m.scanner(content, nil)
	if content != nil {
		n := s.r.count()
		for i := uint32(0); i < n && s.r.err == nil; i++ {
			s.r.name()
			if kind := s.r.byte(); kind == 0x00 {
				s.funcIndex()
			} else {
				s.r.u32()
			}
		}
		end(s.r)
	}
	if s.r.err != nil {
		return nil, fmt.Errorf("export section: %w", s.r.err)
	}
	added := appendName(nil, Global)
	added = appendULEB(append(added, 0x03), uint64(m.globals)) // a global: the flag
	added = appendName(added, StackGlobal)
	added = appendULEB(append(added, 0x03), uint64(m.stackGlobal()))
	extra := uint32(2)
	if m.start != nil {
		added = appendName(added, Start)
		added = appendULEB(append(added, 0x00), uint64(m.funcs.remap(*m.start))) // a function
		extra++
	}
	return grow(content, s.edits, extra, added), nil
}

// elementSection rewrites the function indices of element segments.
func (m *module) elementSection(content []byte) ([]byte, error) {
	s := m.scanner(content, nil)
	r := s.r
	n := r.count()
	for i := uint32(0); i < n && r.err == nil; i++ {
		// The flags: bit 0 passive or declarative, bit 1 with a table
		// index (if active) or declarative, bit 2 expressions instead of
		// function indices.
		flags := r.u32()
		if flags > 7 {
			r.failf("segment %d has unknown flags %d", i, flags)
			break
		}
		if flags&1 == 0 { // active: a table index, maybe, and an offset
			if flags&2 != 0 {
				r.u32()
			}
			s.expr()
		}
		if flags&3 != 0 { // a reference type or element kind, except for the old form
			if flags&4 != 0 {
				refType(r)
			} else if kind := r.byte(); kind != 0x00 {
				r.failf("segment %d has unknown element kind %#02x", i, kind)
			}
		}
		items := r.count()
		for j := uint32(0); j < items && r.err == nil; j++ {
			if flags&4 != 0 {
				s.expr()
			} else {
				s.funcIndex()
			}
		}
	}
	end(r)
	if r.err != nil {
		return nil, fmt.Errorf("element section: %w", r.err)
	}
	return applyEdits(make([]byte, 0, editedLen(content, s.edits)), content, s.edits), nil
}

// codeSection inserts the checks and rewrites function indices.
func (m *module) codeSection(content []byte, check []byte) ([]byte, error) {
	r := &reader{b: content}
	n := r.count()
	out := make([]byte, 0, len(content)+len(content)/16)
	out = appendULEB(out, uint64(n))
	var edits []edit
	for i := uint32(0); i < n && r.err == nil; i++ {
		code := r.bytes(uint64(r.u32()))
		if r.err != nil {
			break
		}
		if int(i) >= len(m.funcTypes) || int(m.funcTypes[i]) >= len(m.types) {
			return nil, fmt.Errorf("code of function %d: the function has no type", m.funcs.imported+i)
		}
		var err error
		if edits, err = m.body(code, check, m.funcTypes[i], edits[:0]); err != nil {
			return nil, fmt.Errorf("code of function %d: %w", m.funcs.imported+i, err)
		}
		out = appendULEB(out, uint64(editedLen(code, edits)))
		out = applyEdits(out, code, edits)
	}
	end(r)
	if r.err != nil {
		return nil, fmt.Errorf("code section: %w", r.err)
	}
	return out, nil
}

// body scans one function body (locals, then instructions) of a function
// of type typ, and returns its edits, in order.
func (m *module) body(code, check []byte, typ uint32, edits []edit) ([]edit, error) {
	s := m.scanner(code, check)
	s.edits = edits
	groups := s.r.count()
	groupsEnd := s.r.off
	locals := uint64(m.types[typ].params)
	for i := uint32(0); i < groups && s.r.err == nil; i++ {
		locals += uint64(s.r.u32()) // how many locals of this type
		valType(s.r)
	}
	if locals > maxLocals {
		return nil, fmt.Errorf("%d locals: %w", locals, errLimit)
	}
	scratch := uint32(locals) // the next local index
	s.scratch = &scratch
	start := s.r.off
	f := s.expr()
	if s.r.err != nil {
		return nil, s.r.err
	}
	if !s.r.done() {
		return nil, fmt.Errorf("%d bytes after the end of the function's code", len(code)-s.r.off)
	}
	// The edits before the first instruction go first.
	var head []edit
	if f.bulk { // one more local, an i32: the scratch local
		head = append(head, edit{at: 0, end: groupsEnd, put: appendULEB(nil, uint64(groups)+1)},
			edit{at: start, end: start, put: []byte{0x01, 0x7f}})
	}
	frame := m.frameSize(locals, f.values)
	counted := f.calls || frame > LeafFrame
	if counted {
		head = append(head, edit{at: start, end: start, put: m.stackEntry(frame)})
	}
	if f.needsEntryCheck() {
		head = append(head, edit{at: start, end: start, put: check})
	}
	if counted {
		head = append(head, edit{at: start, end: start, put: append([]byte{0x02}, m.blockType(typ)...)})
		s.edits = m.stackExits(s.edits, f.exits, len(code), frame)
	}
	if head != nil {
		s.edits = append(head, s.edits...)
	}
	return s.edits, nil
}

func (m *module) scanner(b, check []byte) *scanner {
	return &scanner{r: &reader{b: b}, m: m, funcs: m.funcs, check: check}
}

// nameSection rewrites the function indices of the "name" section's
// function, local and label names (subsections 1, 2 and 3); the module
// name and the other subsections it keeps as they are. Names are only for
// people: a section that does not read as the specification says, in
// order and each subsection whole, is dropped, so that no decoder has to
// make sense of it.
func (m *module) nameSection(content []byte, off int) []byte {
	r := &reader{b: content, off: off}
	out := append([]byte(nil), content[:off]...)
	last := -1
	for !r.done() {
		at := r.off
		id := r.byte()
		sub := r.bytes(uint64(r.u32()))
		if r.err != nil || int(id) <= last {
			return nil
		}
		last = int(id)
		if id > 3 {
			out = append(out, content[at:r.off]...)
			continue
		}
		s := m.scanner(sub, nil)
		name := func() {
			if n := s.r.name(); !utf8.ValidString(n) {
				s.r.failf("a name is not UTF-8")
			}
		}
		if id == 0 { // the module's name
			name()
		} else {
			n := s.r.count()
			for i := uint32(0); i < n && s.r.err == nil; i++ {
				s.funcIndex()
				if id == 1 {
					name()
					continue
				}
				inner := s.r.count() // local or label names: index, name
				for j := uint32(0); j < inner && s.r.err == nil; j++ {
					s.r.u32()
					name()
				}
			}
		}
		end(s.r)
		if s.r.err != nil {
			return nil
		}
		out = append(out, id)
		out = appendULEB(out, uint64(editedLen(sub, s.edits)))
		out = applyEdits(out, sub, s.edits)
	}
	return out
}
