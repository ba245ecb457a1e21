package smtpd

import (
	"strings"
	"testing"
)

// Fields put in front go into the headroom, copying nothing of the
// message; when it is full they still go in front, by a copy.
func TestOutgoingPrepend(t *testing.T) {
	o := newOutgoing(nil, 100)
	o.writeString("Subject: x\r\n\r\nbody\r\n")
	msg := &o.bytes()[0]
	o.prepend([]byte("DKIM-Signature: 1\r\n"))
	o.prepend([]byte("ARC-Seal: 2\r\n"))
	if got, want := string(o.bytes()), "ARC-Seal: 2\r\nDKIM-Signature: 1\r\nSubject: x\r\n\r\nbody\r\n"; got != want {
		t.Fatalf("message = %q, want %q", got, want)
	}
	if &o.buf[len(o.buf)-len("Subject: x\r\n\r\nbody\r\n")] != msg {
		t.Error("the message was moved to make room in front of it")
	}
	big := strings.Repeat("X-Big: y\r\n", headroom/10+1)
	o.prepend([]byte(big))
	if got, want := string(o.bytes()), big+"ARC-Seal: 2\r\nDKIM-Signature: 1\r\nSubject: x\r\n\r\nbody\r\n"; got != want {
		t.Errorf("after more than the headroom: %q..., want %q...", got[:40], want[:40])
	}
}

// A buffer given back is read into again, and what the last message left
// in it does not show.
func TestReadMessageReusesBuffer(t *testing.T) {
	var pool buffers
	buf := pool.get()
	first, err := readMessage(strings.NewReader(strings.Repeat("a", 5000)), 0, buf)
	if err != nil || len(first) != 5000 {
		t.Fatalf("first message: %d bytes, %v", len(first), err)
	}
	pool.put(buf)
	again := pool.get()
	if cap(*again) < 5000 {
		t.Skip("the pool dropped the buffer (a garbage collection ran)")
	}
	second, err := readMessage(strings.NewReader("short"), 0, again)
	if err != nil || string(second) != "short" {
		t.Fatalf("second message = %q, %v", second, err)
	}
	if &second[0] != &first[0] {
		t.Error("the second message was not read into the first one's buffer")
	}
}

// Buffers of big messages are not kept.
func TestBuffersDropBigOnes(t *testing.T) {
	var pool buffers
	p := pool.get()
	*p = make([]byte, 0, maxPooledBuffer+1)
	pool.put(p)
	if q := pool.get(); cap(*q) > maxPooledBuffer {
		t.Errorf("a %d-byte buffer was kept", cap(*q))
	}
}
