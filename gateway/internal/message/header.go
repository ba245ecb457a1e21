package message

import (
	"bytes"
	"slices"
	"strings"
	"sync"
)

// Header is a header block parsed once: its fields in order, each a
// window on the bytes it was parsed from, and an index of them by name.
// Every part of the gateway that reads a message's fields (loop and
// forgery checks, DKIM, ARC and DMARC, plugins, signing and sealing)
// reads this one value instead of scanning the block again; the views it
// makes (Without, Prepend) share its fields' bytes rather than copying
// them. A Header is never changed once made, and is safe for concurrent
// reading. It must not be copied (use the pointer). A nil *Header reads
// as an empty one.
type Header struct {
	fields []Field
	block  []byte // the block it was parsed from; nil for a view

	once  sync.Once
	index map[string]int32 // lower-case name → its top field
	next  []int32          // the next field down of the same name; -1 for none
}

// ParseHeader parses a header block (as Split returns it: fields ending in
// CRLF, no empty line) into its fields as Fields splits them: lines that
// are neither a field nor a continuation are kept as fields with an empty
// name, so that the fields joined give back block exactly. The fields are
// windows on block, which must not change while the Header is in use.
func ParseHeader(block []byte) *Header {
	h := &Header{block: block}
	h.fields = appendFields(nil, block)
	return h
}

// appendFields appends the fields of a header block to dst. The names of
// all of them are cut from one string, so that parsing costs two
// allocations however many fields there are.
func appendFields(dst []Field, block []byte) []Field {
	if len(block) == 0 {
		return dst
	}
	n := bytes.Count(block, []byte("\n")) + 1 // at least the number of fields
	if dst == nil {
		dst = make([]Field, 0, n)
	}
	var text string // block as a string, made at the first name
	for off := 0; off < len(block); {
		rest := block[off:]
		end := lineEnd(rest)
		for end < len(rest) && (rest[end] == ' ' || rest[end] == '\t') {
			end += lineEnd(rest[end:])
		}
		raw := rest[:end:end]
		name := ""
		if i := bytes.IndexByte(raw, ':'); i > 0 {
			if text == "" {
				text = string(block)
			}
			name = strings.TrimRight(text[off:off+i], " \t")
		}
		dst = append(dst, Field{Name: name, Raw: raw})
		off += end
	}
	return dst
}

// Len is the number of fields, lines that are no field included.
func (h *Header) Len() int { return len(h.Fields()) }

// Fields returns the fields in order, top first. The caller must not
// change the slice or the bytes of the fields.
func (h *Header) Fields() []Field {
	if h == nil {
		return nil
	}
	return h.fields
}

// Bytes returns the header block. A parsed Header gives back the block it
// was parsed from; a view joins its fields into a new one.
func (h *Header) Bytes() []byte {
	if h == nil {
		return nil
	}
	if h.block != nil || len(h.fields) == 0 {
		return h.block
	}
	return h.AppendTo(nil)
}

// Size is the length of the header block, in bytes.
func (h *Header) Size() int {
	if h == nil {
		return 0
	}
	if h.block != nil {
		return len(h.block)
	}
	n := 0
	for _, f := range h.fields {
		n += len(f.Raw)
	}
	return n
}

// AppendTo appends the header block to dst.
func (h *Header) AppendTo(dst []byte) []byte {
	if h == nil {
		return dst
	}
	if h.block != nil {
		return append(dst, h.block...)
	}
	for _, f := range h.fields {
		dst = append(dst, f.Raw...)
	}
	return dst
}

// Count returns how many fields have the given name. Names match without
// regard to the case of ASCII letters, and only of those: field names are
// ASCII (RFC 5322 §3.6.8), and DKIM matches them so too.
func (h *Header) Count(name string) int {
	n := 0
	for i := h.top(name); i >= 0; i = h.next[i] {
		n++
	}
	return n
}

// Get returns the nth field (0 the top one) with the given name, matched
// as Count matches it. No name finds the lines that are not fields.
func (h *Header) Get(name string, nth int) (Field, bool) {
	for i := h.top(name); i >= 0; i = h.next[i] {
		if nth == 0 {
			return h.fields[i], true
		}
		nth--
	}
	return Field{}, false
}

// All returns the fields with the given name, top first.
func (h *Header) All(name string) []Field {
	var all []Field
	for i := h.top(name); i >= 0; i = h.next[i] {
		all = append(all, h.fields[i])
	}
	return all
}

// top returns the index of the top field named name, or -1.
func (h *Header) top(name string) int32 {
	if h == nil || name == "" {
		return -1
	}
	h.once.Do(h.makeIndex)
	var buf [64]byte
	key := AppendLower(buf[:0], name)
	if i, ok := h.index[string(key)]; ok {
		return i
	}
	return -1
}

// makeIndex chains the fields of each name, so that a look-up by name
// costs no scan of the header. The lower-case names are cut from one
// string, one allocation for them all.
func (h *Header) makeIndex() {
	size := 0
	for _, f := range h.fields {
		size += len(f.Name)
	}
	var low strings.Builder
	low.Grow(size)
	for _, f := range h.fields {
		for i := 0; i < len(f.Name); i++ {
			c := f.Name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			low.WriteByte(c)
		}
	}
	keys := low.String()
	// Sized for the names of a short header: a long one repeats names
	// (Received, DKIM-Signature), and a map made for every field would be
	// mostly empty.
	h.index = make(map[string]int32, min(len(h.fields), 8))
	h.next = make([]int32, len(h.fields))
	// Bottom up, so that each name ends at its top field.
	for i := len(h.fields) - 1; i >= 0; i-- {
		n := len(h.fields[i].Name)
		size -= n
		h.next[i] = -1
		if n == 0 {
			continue
		}
		key := keys[size : size+n]
		if below, ok := h.index[key]; ok {
			h.next[i] = below
		}
		h.index[key] = int32(i)
	}
}

// AppendLower appends s with ASCII letters in lower case: field names
// are ASCII (RFC 5322 §3.6.8) and match without regard to case. DKIM
// picks the fields a signature covers by the same rule.
func AppendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Without returns the header without any field with one of names, as
// Remove does for a block: names match as strings.EqualFold has them
// match, and the name "" removes the lines that are no field. It shares
// h's bytes; with nothing to remove it is h itself.
func (h *Header) Without(names ...string) *Header {
	if len(names) == 0 {
		return h
	}
	return h.WithoutFunc(func(f Field) bool {
		for _, n := range names {
			if strings.EqualFold(f.Name, n) {
				return true
			}
		}
		return false
	})
}

// WithoutFunc returns the header without the fields drop reports true
// for. It shares h's bytes; with nothing to remove it is h itself.
func (h *Header) WithoutFunc(drop func(Field) bool) *Header {
	first := -1
	for i, f := range h.Fields() {
		if drop(f) {
			first = i
			break
		}
	}
	if first < 0 {
		return h
	}
	kept := make([]Field, first, len(h.fields)-1)
	copy(kept, h.fields[:first])
	for _, f := range h.fields[first+1:] {
		if !drop(f) {
			kept = append(kept, f)
		}
	}
	return &Header{fields: kept}
}

// Prepend returns the header with the fields of block (a header block of
// whole fields, such as FormatField makes) on top: the header that
// ParseHeader would make of block followed by h's block. The new fields
// are parsed; h's are not parsed again, and their bytes are shared, but
// for one case: a first field of h that starts with a space or tab (a
// block that began with a continuation line) continues the last field of
// block, as it will for whoever reads the two joined, and the two are
// copied into one.
func (h *Header) Prepend(block []byte) *Header {
	if len(block) == 0 {
		return h
	}
	rest := h.Fields()
	fields := appendFields(make([]Field, 0, bytes.Count(block, []byte("\n"))+1+len(rest)), block)
	if len(rest) > 0 && (rest[0].Raw[0] == ' ' || rest[0].Raw[0] == '\t') {
		last := &fields[len(fields)-1]
		joined := append(slices.Clip(last.Raw), rest[0].Raw...)
		*last = appendFields(nil, joined)[0]
		rest = rest[1:]
	}
	return &Header{fields: append(fields, rest...)}
}
