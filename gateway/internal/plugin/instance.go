package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/plugin/interrupt"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero"
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

	mode deadlineMode
	// flag is the module's interrupt flag (package interrupt), which timer
	// sets at a call's deadline; fired says the timer's function ran.
	flag  api.MutableGlobal
	timer *time.Timer
	fired chan struct{}
	// budget is the module's stack budget (package interrupt), which says
	// whether a trap was the call depth limit.
	budget api.Global
}

// deadlineMode is how calls are held to their deadline.
type deadlineMode uint8

const (
	// deadlineInterrupt is the gateway's way: the module is instrumented
	// with package interrupt, and a timer per instance sets its flag.
	deadlineInterrupt deadlineMode = iota
	// deadlineNone has no deadline: the baseline of the benchmarks.
	deadlineNone
	// deadlineCCD is wazero's WithCloseOnContextDone, kept to compare the
	// benchmarks against: it calls into Go at every loop back-edge.
	deadlineCCD
)

// errDeadline marks a call the interrupt flag stopped.
var errDeadline = errors.New("interrupted at its deadline")

// errDepth marks a call that trapped because its calls would have taken
// more of the stack than package interrupt allows.
var errDepth = errors.New("call depth limit exceeded")

// stackBound bounds the memory an instance's calls take on wazero's call
// stacks, beyond its linear memory, for a stack_limit (the instrumenter's
// budget, a power of two). wazero keeps one stack per function the host
// calls (sluice_buffer, sluice_configure, sluice_handle; those of start
// are dropped) and grows each by doubling from 10 KiB; package interrupt
// keeps what calls need of each under the limit and interrupt.LeafFrame,
// which the doubling from 10 KiB holds in 1.25 × the limit
// (interrupt.CheckStackBudget): 5 MiB for the default 4 MiB. Three of
// them take 3.75 × the limit; the rest of 4 × is for the frame each
// growth adds to the doubling. Real frames are at most half of the
// estimates, which leaves room for a doubling's old copy until it is
// collected. So 16 MiB for the default.
func stackBound(limit uint64) uint64 { return 4 * limit }

const (
	// minBufferRequest is the least buffer size asked of a guest, so that
	// small requests of varying size do not each ask for a new buffer.
	minBufferRequest = 4096
	// maxMessage bounds a message either way across the boundary.
	maxMessage = 1 << 20
)

func newInstance(mod api.Module, output *capture, mode deadlineMode) (*instance, error) {
	in := &instance{
		mod:       mod,
		mem:       mod.Memory(),
		buffer:    mod.ExportedFunction(abi.ExportBuffer),
		configure: mod.ExportedFunction(abi.ExportConfigure),
		handle:    mod.ExportedFunction(abi.ExportHandle),
		output:    output,
		mode:      mode,
	}
	if mode == deadlineInterrupt {
		flag, ok := mod.ExportedGlobal(interrupt.Global).(api.MutableGlobal)
		if !ok {
			return nil, fmt.Errorf("the module has no interrupt flag %s", interrupt.Global)
		}
		// One timer per instance, re-armed per call: a new timer or a
		// context per call costs three to eight times as much
		// (BenchmarkDeadlineArming).
		in.flag, in.fired = flag, make(chan struct{}, 1)
		if in.budget = mod.ExportedGlobal(interrupt.StackGlobal); in.budget == nil {
			return nil, fmt.Errorf("the module has no stack budget %s", interrupt.StackGlobal)
		}
		in.timer = time.AfterFunc(time.Hour, in.interrupt)
		in.timer.Stop()
	}
	return in, nil
}

// instantiateYield provides the function an instrumented module calls
// every interrupt.YieldEvery checks. It does nothing: the call itself, out
// of machine code and into Go, is where the Go runtime can stop the
// goroutine for a garbage collection, which otherwise would wait for the
// guest, and the timer that is to interrupt it with them.
func instantiateYield(ctx context.Context, rt wazero.Runtime) error {
	_, err := rt.NewHostModuleBuilder(interrupt.YieldModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}), nil, nil).
		Export(interrupt.YieldFunc).
		Instantiate(ctx)
	return err
}

// interrupt runs on the timer's goroutine at a call's deadline: the guest
// traps at its next loop header or function entry.
func (in *instance) interrupt() {
	in.flag.Set(1)
	in.fired <- struct{}{}
}

// start runs what the module runs once when it starts: its start function
// (which instrumenting turned into an export) and the WASI reactor's
// _initialize, where a Go guest initialises its runtime and packages.
// Each runs under the deadline; a failure says which.
func (in *instance) start(ctx context.Context, timeout time.Duration) (string, error) {
	for _, name := range []string{interrupt.Start, "_initialize"} {
		fn := in.mod.ExportedFunction(name)
		if fn == nil {
			continue
		}
		err := in.guard(ctx, timeout, func(ctx context.Context) error {
			return fn.CallWithStack(ctx, in.stack[:])
		})
		if err != nil {
			return name, err
		}
	}
	return "", nil
}

// call writes msg into the guest's buffer, calls fn with its length and
// returns the guest's answer, under the deadline. It is the one path by
// which the host calls a guest's exports, so that the deadline mechanism
// lives here. After an error the instance must not be used again.
func (in *instance) call(ctx context.Context, fn api.Function, msg []byte, timeout time.Duration) ([]byte, error) {
	var answer []byte
	err := in.guard(ctx, timeout, func(ctx context.Context) error {
		var err error
		answer, err = in.exchange(ctx, fn, msg)
		return err
	})
	return answer, err
}

// guard runs f, which calls into the guest, under a deadline of timeout.
// f's error wraps errDeadline if the interrupt flag stopped it.
func (in *instance) guard(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	switch in.mode {
	case deadlineNone:
		return f(ctx)
	case deadlineCCD:
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return f(ctx)
	}
	in.flag.Set(0)
	in.timer.Reset(timeout)
	err := f(ctx)
	if err != nil && uint32(in.budget.Get()) == interrupt.StackTrapped {
		err = fmt.Errorf("%w: %w", errDepth, err)
	}
	if !in.timer.Stop() {
		// The timer fired: wait until its function is done with the flag,
		// so that it cannot set it during the next call.
		<-in.fired
		if err != nil {
			err = fmt.Errorf("%w: %w", errDeadline, err)
		}
	}
	return err
}

// exchange is one call: the request into the guest's buffer, the answer
// copied out at once, because memory may grow under any view of it.
func (in *instance) exchange(ctx context.Context, fn api.Function, msg []byte) ([]byte, error) {
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

func (in *instance) close(ctx context.Context) {
	if in.timer != nil {
		in.timer.Stop()
	}
	_ = in.mod.Close(ctx)
}

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
