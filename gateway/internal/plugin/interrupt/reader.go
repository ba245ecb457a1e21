package interrupt

import (
	"errors"
	"fmt"
)

// reader decodes the WebAssembly binary format from a byte slice. Its
// first error sticks: later reads return zero values, so a decoding loop
// checks r.err once per round instead of after every read.
type reader struct {
	b   []byte
	off int
	err error
}

var errTruncated = errors.New("unexpected end")

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) failf(format string, args ...any) {
	r.fail(fmt.Errorf(format+" at offset %d", append(args, r.off)...))
}

func (r *reader) done() bool { return r.err != nil || r.off >= len(r.b) }

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail(errTruncated)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// bytes returns the next n bytes, aliasing the input.
func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail(errTruncated)
		return nil
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b
}

// uleb reads an unsigned LEB128 number of at most bits bits. The encoding
// may be padded (Go pads indices to five bytes) but not longer than
// ceil(bits/7) bytes, and the unused bits of its last byte must be zero.
func (r *reader) uleb(bits uint) uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift+7 > bits && c&0x7f>>(bits-shift) != 0 {
			r.failf("integer too large")
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
		if shift+7 >= bits {
			r.failf("integer representation too long")
			return 0
		}
	}
}

// sleb reads a signed LEB128 number of at most bits bits. Within the last
// byte, the unused bits must repeat the sign bit.
func (r *reader) sleb(bits uint) int64 {
	var v int64
	for shift := uint(0); ; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift+7 > bits {
			// The sign bit and the unused bits above it must agree.
			rest := int8(c<<1) >> (bits - shift)
			if rest != 0 && rest != -1 {
				r.failf("integer too large")
				return 0
			}
		}
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift+7 < 64 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v
		}
		if shift+7 >= bits {
			r.failf("integer representation too long")
			return 0
		}
	}
}

func (r *reader) u32() uint32 { return uint32(r.uleb(32)) }

// skipLEB skips a LEB128 number of at most bits bits whose value does not
// matter, a constant: only its length is checked. wazero accepts
// constants whose last byte has bits beyond the width, which the
// specification does not; being as lenient loses nothing here.
func (r *reader) skipLEB(bits uint) {
	for i := uint(0); r.err == nil; i++ {
		if i*7 >= bits {
			r.failf("integer representation too long")
			return
		}
		if r.byte()&0x80 == 0 {
			return
		}
	}
}

// count reads the length of a vector. Every item takes a byte at least,
// so a count over the bytes left is refused as truncated: wazero v1.12
// allocates for the count before it reads the items, and a few bytes can
// promise gigabytes.
func (r *reader) count() uint32 {
	n := r.u32()
	if left := len(r.b) - r.off; r.err == nil && uint64(n) > uint64(left) {
		r.fail(fmt.Errorf("%d items in %d bytes: %w", n, left, errTruncated))
		return 0
	}
	return n
}

// name reads a length-prefixed string.
func (r *reader) name() string { return string(r.bytes(uint64(r.u32()))) }

// appendULEB appends v in the shortest unsigned LEB128 form.
func appendULEB(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendName appends a length-prefixed string.
func appendName(b []byte, s string) []byte {
	return append(appendULEB(b, uint64(len(s))), s...)
}

// appendSLEB appends v in the shortest signed LEB128 form.
func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
