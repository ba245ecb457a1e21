package smtpd

import (
	"bytes"
	"io"
	"slices"
	"sync"
)

// maxPooledBuffer is the largest buffer kept for reuse: one for a rare big
// message is left to the garbage collector rather than held.
const maxPooledBuffer = 1 << 20

// buffers keeps the buffers that messages are read into and built in.
// Without them each message's buffer grows from nothing, copying itself at
// each doubling, and is garbage as soon as the message is relayed: for a
// 4 KiB message, a third of all the memory a session allocates.
type buffers struct{ pool sync.Pool }

func (b *buffers) get() *[]byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return p
	}
	return new([]byte)
}

// put gives a buffer back. Nothing may use what it holds afterwards.
func (b *buffers) put(p *[]byte) {
	if cap(*p) <= maxPooledBuffer {
		*p = (*p)[:0]
		b.pool.Put(p)
	}
}

// maxPrealloc bounds what the client's SIZE can make us set aside before
// the bytes arrive: a client that declares the largest size and then
// sends nothing must not hold that much memory. Larger messages grow
// their buffer as they come.
const maxPrealloc = 128 << 10

// readMessage reads the whole message into *buf, which it may grow: it is
// signed before it is sent, and the signature goes in front. go-smtp stops
// it at the size limit.
func readMessage(r io.Reader, sizeHint int64, buf *[]byte) ([]byte, error) {
	b := bytes.NewBuffer((*buf)[:0])
	if sizeHint > 0 {
		b.Grow(int(min(sizeHint, maxPrealloc)) + 512)
	}
	_, err := b.ReadFrom(r)
	*buf = b.Bytes()
	if err != nil {
		return nil, err
	}
	return *buf, nil
}

// headroom is the room left in front of a forwarded header for what is
// signed over it and goes before it, DKIM signatures and an ARC set:
// with it, putting them in front copies nothing of the message.
const headroom = 8 << 10

// outgoing is a forwarded header being made, in buf[start:].
type outgoing struct {
	buf   []byte
	start int
}

// newOutgoing starts a message in buf, with room for n bytes after the
// headroom.
func newOutgoing(buf []byte, n int) *outgoing {
	return &outgoing{buf: slices.Grow(buf[:0], headroom+n)[:headroom], start: headroom}
}

func (o *outgoing) write(p []byte)       { o.buf = append(o.buf, p...) }
func (o *outgoing) writeString(p string) { o.buf = append(o.buf, p...) }
func (o *outgoing) bytes() []byte        { return o.buf[o.start:] }

// prepend puts p in front of the message, in the headroom if it still
// fits.
func (o *outgoing) prepend(p []byte) {
	if len(p) <= o.start {
		o.start -= len(p)
		copy(o.buf[o.start:], p)
		return
	}
	o.buf = append(slices.Clip(p), o.bytes()...)
	o.start = 0
}
