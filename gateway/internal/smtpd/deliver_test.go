package smtpd

import (
	"strings"
	"testing"
)

func TestHeaderFields(t *testing.T) {
	for header, want := range map[string]int{
		"":                 0,
		"A: 1\r\n":         1,
		"A: 1\r\nB: 2\r\n": 2,
		"A: 1\r\n\tcontinued\r\n more\r\nB: 2\r\n": 2,
		"not a field\r\nA: 1\r\n":                  2,
		"A: 1":                                     1,
	} {
		if got := headerFields([]byte(header)); got != want {
			t.Errorf("headerFields(%q) = %d, want %d", header, got, want)
		}
	}
}

// A header block of a message that came through a few hops: 40 fields,
// some folded, about 4 KiB. Every message is counted.
func BenchmarkHeaderFields(b *testing.B) {
	var h strings.Builder
	for i := range 40 {
		if i%4 == 0 {
			h.WriteString("Received: from relay.example.net (relay.example.net [192.0.2.1])\r\n\tby mx.example.org with ESMTPS id abc; Thu, 26 Nov 2026 10:00:00 +0000\r\n")
		} else {
			h.WriteString("X-Field: a value of a typical length for a header field\r\n")
		}
	}
	header := []byte(h.String())
	b.SetBytes(int64(len(header)))
	for b.Loop() {
		headerFields(header)
	}
}
