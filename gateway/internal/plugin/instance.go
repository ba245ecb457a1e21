package plugin

import (
	"context"
	"fmt"

	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero/api"
)

// instance is one started module. It serves one call at a time; the pool
// hands it out.
type instance struct {
	mod                       api.Module
	mem                       api.Memory
	buffer, configure, handle api.Function
	bufPtr, bufLen            uint32 // the guest's buffer as it last handed it out
	stack                     [1]uint64
	req                       []byte   // the encoded request, reused
	out                       []byte   // the guest's answer, copied out
	output                    *capture // what the guest wrote to stdout and stderr
}

const (
	// minBufferRequest is the least buffer size asked of a guest, so that
	// small requests of varying size do not each ask for a new buffer.
	minBufferRequest = 4096
	// maxMessage bounds a message either way across the boundary.
	maxMessage = 1 << 20
)

func newInstance(mod api.Module, output *capture) *instance {
	return &instance{
		mod:       mod,
		mem:       mod.Memory(),
		buffer:    mod.ExportedFunction(abi.ExportBuffer),
		configure: mod.ExportedFunction(abi.ExportConfigure),
		handle:    mod.ExportedFunction(abi.ExportHandle),
		output:    output,
	}
}

// call writes msg into the guest's buffer, calls fn with its length and
// returns the guest's answer, copied out at once because memory may grow
// under any view of it. It is the one path by which the host calls a
// guest, so that the deadline mechanism can be swapped here. After an
// error the instance must not be used again.
func (in *instance) call(ctx context.Context, fn api.Function, msg []byte) ([]byte, error) {
	if len(msg) > maxMessage {
		return nil, fmt.Errorf("request of %d bytes is over the limit of %d", len(msg), maxMessage)
	}
	n := uint32(len(msg))
	in.output.reset()
	// The guest keeps its buffer until asked for a bigger one, so the host
	// asks only when a request outgrows what it asked for last.
	if in.bufLen == 0 || n > in.bufLen {
		size := max(n, minBufferRequest)
		in.stack[0] = uint64(size)
		if err := in.buffer.CallWithStack(ctx, in.stack[:]); err != nil {
			return nil, err
		}
		in.bufPtr, in.bufLen = uint32(in.stack[0]), size
	}
	if !in.mem.Write(in.bufPtr, msg) {
		return nil, fmt.Errorf("its buffer at %#x is outside its memory", in.bufPtr)
	}
	in.stack[0] = uint64(n)
	if err := fn.CallWithStack(ctx, in.stack[:]); err != nil {
		return nil, err
	}
	ptr, length := abi.UnpackResult(in.stack[0])
	if length > maxMessage {
		return nil, fmt.Errorf("answer of %d bytes is over the limit of %d", length, maxMessage)
	}
	b, ok := in.mem.Read(ptr, length)
	if !ok {
		return nil, fmt.Errorf("answer at %#x, %d bytes, is outside its memory", ptr, length)
	}
	in.out = append(in.out[:0], b...)
	return in.out, nil
}

func (in *instance) close(ctx context.Context) { _ = in.mod.Close(ctx) }

// capture keeps the first bytes a guest wrote to stdout or stderr during
// the current call, to show with its failure: a Go guest that runs out of
// memory or panics says so only there, in its first lines.
type capture struct{ b []byte }

const captureSize = 512

func (c *capture) Write(p []byte) (int, error) {
	if room := captureSize - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(len(p), room)]...)
	}
	return len(p), nil
}

func (c *capture) reset() { c.b = c.b[:0] }

func (c *capture) String() string { return string(c.b) }
