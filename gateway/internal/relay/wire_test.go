package relay

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestWireData(t *testing.T) {
	for _, c := range []struct{ name, msg, wire string }{
		{"plain", "A: b\r\n\r\nbody\r\n", "A: b\r\n\r\nbody"},
		{"leading dot", ".x\r\n", "..x"},
		{"dot lines", "A: b\r\n\r\n.\r\n..\r\n.x\r\nx.\r\n", "A: b\r\n\r\n..\r\n...\r\n..x\r\nx."},
		{"bare LF", "A: b\n\nbody\n", "A: b\r\n\r\nbody\r\n"},
		{"bare LF then dot", "x\n.\n", "x\r\n..\r\n"},
		{"CR CR LF kept", "x\r\r\ny\r\n", "x\r\r\ny"},
		{"bare CR kept", "x\ry\r\n", "x\ry"},
		{"no final CRLF", "x", "x"},
		{"empty", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := string(wireData([]byte(c.msg))); got != c.wire {
				t.Errorf("wireData(%q) = %q, want %q", c.msg, got, c.wire)
			}
		})
	}
}

// Most messages need no stuffing: they go out as they are, not copied.
func TestWireDataDoesNotCopyPlainMessages(t *testing.T) {
	msg := []byte("A: b\r\n\r\n" + strings.Repeat("line\r\n", 100))
	if w := wireData(msg); &w[0] != &msg[0] {
		t.Error("a message without dots or bare LFs was copied")
	}
}

// What the destination stores is the message exactly as given, whatever
// its dots and line endings: dot-stuffing is undone at the other end, and
// what was signed arrives unchanged.
func TestDataArrivesExactly(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 2000)
	for i, msg := range []string{
		testMessage,
		"A: b\r\n\r\n.\r\n..\r\n.x\r\n",
		"A: b\r\n\r\nx\r\r\ny\r\n",
		"A: b\r\n\r\n" + big + ".end\r\n",
	} {
		send(t, r, "example.test", "a@fwd.test", "one@real.test", msg)
		if got := d.deliveries()[i].data; got != msg {
			t.Errorf("message %d arrived as %q, want %q", i, abbreviate(got), abbreviate(msg))
		}
	}
}

func abbreviate(s string) string {
	if len(s) > 200 {
		return s[:100] + "..." + s[len(s)-100:]
	}
	return s
}

func BenchmarkWireData(b *testing.B) {
	for _, c := range []struct {
		name string
		msg  []byte
	}{
		{"plain64KiB", bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 1024)},
		{"dotted64KiB", bytes.Repeat([]byte(".123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 1024)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.msg)))
			b.ReportAllocs()
			for b.Loop() {
				wireData(c.msg)
			}
		})
	}
}

// A message in parts goes on the wire exactly as the joined message
// would, wherever it is cut: at the header's end, mid-line, before a dot,
// between a CR and its LF, into three parts, or with empty parts.
func TestWirePartsIsWireData(t *testing.T) {
	for _, msg := range []string{
		"A: b\r\n\r\nbody\r\n",
		"A: b\r\n\r\n.\r\n..\r\n.x\r\nx.\r\n",
		"A: b\n\n.body\n",
		"A: b\r\n\r\nx\r\r\ny\r\n",
		"A: b\r\n\r\n",
		"A: b\r\n\r\nno final line end",
		".\r\n",
	} {
		want := string(wireData([]byte(msg)))
		for i := 0; i <= len(msg); i++ {
			for j := i; j <= len(msg); j++ {
				parts := [][]byte{[]byte(msg[:i]), []byte(msg[i:j]), []byte(msg[j:])}
				var got bytes.Buffer
				wire := wireParts(parts)
				wire.WriteTo(&got)
				if got.String() != want {
					t.Fatalf("parts %q: on the wire %q, want %q", parts, got.String(), want)
				}
			}
		}
	}
}

// The header and the body go out as they are, neither copied nor joined,
// when neither needs stuffing: the common case.
func TestWirePartsDoesNotCopy(t *testing.T) {
	header := []byte("A: b\r\n\r\n")
	body := []byte(strings.Repeat("line\r\n", 100))
	wire := wireParts([][]byte{header, body})
	if len(wire) != 2 || &wire[0][0] != &header[0] || &wire[1][0] != &body[0] {
		t.Error("a plain header and body were copied or joined")
	}
}

// Sent in parts, a message arrives exactly as the joined message.
func TestDataInPartsArrivesExactly(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	ctx := context.Background()
	header, body := "From: a@origin.test\r\nSubject: parts\r\n\r\n", ".dot first\r\nthen text\r\n"
	txn, rcptErr, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, "one@real.test")
	if err != nil || rcptErr != nil {
		t.Fatalf("Begin: %v, %v", err, rcptErr)
	}
	if _, err := txn.Data(ctx, []byte(header), []byte(body)); err != nil {
		t.Fatalf("Data: %v", err)
	}
	txn.Close()
	if got := d.deliveries()[0].data; got != header+body {
		t.Errorf("arrived as %q, want %q", got, header+body)
	}
}
