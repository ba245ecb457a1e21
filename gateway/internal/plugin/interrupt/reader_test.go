package interrupt

import (
	"strings"
	"testing"
	"testing/quick"
)

func TestULEB(t *testing.T) {
	cases := []struct {
		in   string
		bits uint
		want uint64
		err  string
	}{
		{"\x00", 32, 0, ""},
		{"\x7f", 32, 127, ""},
		{"\x80\x01", 32, 128, ""},
		{"\x80\x80\x80\x80\x00", 32, 0, ""}, // padded to five bytes, as Go writes indices
		{"\xff\xff\xff\xff\x0f", 32, 1<<32 - 1, ""},
		{"\xff\xff\xff\xff\x1f", 32, 0, "integer too large"},
		{"\x80\x80\x80\x80\x80\x00", 32, 0, "integer representation too long"},
		{"\x80", 32, 0, "unexpected end"},
		{"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 64, 1<<64 - 1, ""},
		{"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 64, 0, "integer too large"},
	}
	for _, c := range cases {
		r := &reader{b: []byte(c.in)}
		got := r.uleb(c.bits)
		if c.err != "" {
			if r.err == nil || !strings.Contains(r.err.Error(), c.err) {
				t.Errorf("uleb(%q, %d) = %d, %v; want error %q", c.in, c.bits, got, r.err, c.err)
			}
			continue
		}
		if r.err != nil || got != c.want || r.off != len(c.in) {
			t.Errorf("uleb(%q, %d) = %d, %v at %d; want %d", c.in, c.bits, got, r.err, r.off, c.want)
		}
	}
}

func TestSLEB(t *testing.T) {
	cases := []struct {
		in   string
		bits uint
		want int64
		err  string
	}{
		{"\x7f", 32, -1, ""},
		{"\x40", 33, -64, ""}, // the empty block type
		{"\x3f", 32, 63, ""},
		{"\xff\xff\xff\xff\x7f", 32, -1, ""}, // padded
		{"\x80\x80\x80\x80\x78", 32, -1 << 31, ""},
		{"\xff\xff\xff\xff\x07", 32, 1<<31 - 1, ""},
		{"\xff\xff\xff\xff\x0f", 32, 0, "integer too large"}, // 2^32-1 is not an s32
		{"\x80\x80\x80\x80\x70", 32, 0, "integer too large"},
		{"\xff\xff\xff\xff\x0f", 33, 1<<32 - 1, ""},
		{"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x7f", 64, -1 << 63, ""},
		{"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x7e", 64, 0, "integer too large"},
	}
	for _, c := range cases {
		r := &reader{b: []byte(c.in)}
		got := r.sleb(c.bits)
		if c.err != "" {
			if r.err == nil || !strings.Contains(r.err.Error(), c.err) {
				t.Errorf("sleb(%q, %d) = %d, %v; want error %q", c.in, c.bits, got, r.err, c.err)
			}
			continue
		}
		if r.err != nil || got != c.want || r.off != len(c.in) {
			t.Errorf("sleb(%q, %d) = %d, %v at %d; want %d", c.in, c.bits, got, r.err, r.off, c.want)
		}
	}
}

// What the writers write, the readers read back, whole.
func TestLEBRoundTrip(t *testing.T) {
	unsigned := func(v uint64) bool {
		r := &reader{b: appendULEB(nil, v)}
		return r.uleb(64) == v && r.err == nil && r.done()
	}
	signed := func(v int64) bool {
		r := &reader{b: appendSLEB(nil, v)}
		return r.sleb(64) == v && r.err == nil && r.done()
	}
	if err := quick.Check(unsigned, nil); err != nil {
		t.Error(err)
	}
	if err := quick.Check(signed, nil); err != nil {
		t.Error(err)
	}
	for _, v := range []int64{0, -1, 63, 64, -64, -65, 1<<63 - 1, -1 << 63} {
		if !signed(v) {
			t.Errorf("%d does not round-trip", v)
		}
	}
}
