package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// Plugin is a loaded plugin: a compiled module and a pool of configured
// instances. It is safe for concurrent use.
type Plugin struct {
	name     string
	timeout  time.Duration
	deadline deadlineMode
	// stackLimit is the stack budget its module was instrumented with,
	// for the error at the call depth limit.
	stackLimit uint64
	// startTimeout bounds each call that starts an instance: its start
	// functions, then configure.
	startTimeout time.Duration
	onFailure    FailurePolicy
	logger       *slog.Logger

	rt           wazero.Runtime
	memory       *memoryPool // backs the instances' linear memories
	compiled     wazero.CompiledModule
	moduleConfig wazero.ModuleConfig
	configReq    []byte // the encoded ConfigureRequest every instance gets

	declared    abi.StageSet    // what the guest says it handles
	stages      abi.StageSet    // what it is called at
	permissions abi.Permissions // what it may do

	// pool holds the idle instances; nil stands for one that failed and
	// is started afresh when next taken.
	pool      chan *instance
	closed    chan struct{}
	closeOnce sync.Once

	host *hostFuncs // what its host functions know (hostfuncs.go)
	info Info       // for operators (info.go)
}

// Name returns the plugin's name from its Spec.
func (p *Plugin) Name() string { return p.name }

// Stages returns the stages the plugin is called at.
func (p *Plugin) Stages() abi.StageSet { return p.stages }

// Permissions returns what the plugin declared it may do.
func (p *Plugin) Permissions() abi.Permissions { return p.permissions }

// start starts and configures a new instance, which must declare what the
// first one did.
func (p *Plugin) start(ctx context.Context) (*instance, error) {
	inst, resp, err := p.startConfigured(ctx)
	if err != nil {
		return nil, err
	}
	if resp.Stages&allStages != p.declared || resp.Permissions != p.permissions {
		inst.close(ctx)
		return nil, errors.New("an instance declared other stages or permissions than the first")
	}
	return inst, nil
}

// startConfigured starts a new instance and configures it.
func (p *Plugin) startConfigured(ctx context.Context) (*instance, abi.ConfigureResponse, error) {
	var resp abi.ConfigureResponse
	ctx, cancel := context.WithTimeout(ctx, p.startTimeout)
	defer cancel()
	output := &capture{}
	// The memory is reserved to its limit and unmapped when the instance
	// closes (memory.go).
	ctx = experimental.WithMemoryAllocator(ctx, p.memory)
	mod, err := p.rt.InstantiateModule(ctx, p.compiled, p.moduleConfig.WithStdout(output).WithStderr(output))
	if err != nil {
		return nil, resp, withOutput(fmt.Errorf("starting an instance: %w", err), output)
	}
	inst, err := newInstance(mod, output, p.deadline)
	if err != nil {
		_ = mod.Close(ctx)
		return nil, resp, err
	}
	if fn, err := inst.start(ctx, p.startTimeout); err != nil {
		inst.close(ctx)
		return nil, resp, withOutput(fmt.Errorf("starting an instance: %s %w", fn, p.callError(ctx, err, p.startTimeout)), output)
	}
	answer, err := inst.call(ctx, inst.configure, p.configReq, p.startTimeout)
	if err != nil {
		err = p.callError(ctx, err, p.startTimeout)
	} else {
		if err = abi.DecodeConfigureResponse(answer, &resp); err != nil {
			err = fmt.Errorf("the answer is not a ConfigureResponse: %w", err)
		}
	}
	if err != nil {
		inst.close(ctx)
		return nil, resp, withOutput(fmt.Errorf("configuring: %w", err), output)
	}
	if resp.Error != "" {
		inst.close(ctx)
		err := fmt.Errorf("config refused: %s", resp.Error)
		if resp.ErrorKey != "" {
			// The plugin named the setting: report the error at its line.
			return nil, resp, &KeyError{Key: "config." + resp.ErrorKey, Err: err}
		}
		return nil, resp, err
	}
	return inst, resp, nil
}

var errClosed = errors.New("the plugin is closed")

// handle asks the plugin for its verdict on req. Any error is a failure of
// the plugin; the instance involved is discarded and replaced.
func (p *Plugin) handle(ctx context.Context, req *abi.Request) (abi.Verdict, error) {
	// Checked first because select picks at random among ready cases, and a
	// call under a done context would only wreck the instance it took.
	if err := ctx.Err(); err != nil {
		return abi.Verdict{}, fmt.Errorf("cancelled: %w", err)
	}
	var inst *instance
	select {
	case inst = <-p.pool:
	default:
		// Every instance is busy: wait for one. A plugin that answers,
		// however slowly, is waited for as long as it takes, since that
		// is only queueing: the rate is the same and a client waits
		// minutes for a reply. But when the instance that comes back is
		// none (its call failed: timed out on a key-value store or a DNS
		// server that does not answer, or trapped) after a wait of more
		// than the timeout, the plugin is failing and calls queue behind
		// it for a timeout each: this call fails at once and on_failure
		// answers, so that each command's time does not grow with the
		// number of sessions waiting.
		start := time.Now()
		select {
		case inst = <-p.pool:
		case <-p.closed:
			return abi.Verdict{}, errClosed
		case <-ctx.Done():
			return abi.Verdict{}, fmt.Errorf("waiting for a free instance: %w", ctx.Err())
		}
		if waited := time.Since(start); inst == nil && waited > p.timeout {
			p.pool <- nil
			return abi.Verdict{}, fmt.Errorf("no free instance after %s, over its timeout of %s: all %d busy, and its calls failing",
				waited.Round(time.Millisecond), p.timeout, cap(p.pool))
		}
	}
	if inst == nil {
		var err error
		if inst, err = p.start(ctx); err != nil {
			p.pool <- nil
			return abi.Verdict{}, fmt.Errorf("replacing a failed instance: %w", err)
		}
	}
	v, err := p.decide(ctx, inst, req)
	if err != nil {
		inst.close(context.Background())
		p.pool <- nil
		return abi.Verdict{}, err
	}
	p.pool <- inst
	return v, nil
}

// decide makes one call under the plugin's deadline and checks the verdict.
func (p *Plugin) decide(ctx context.Context, inst *instance, req *abi.Request) (abi.Verdict, error) {
	var v abi.Verdict
	inst.req = abi.AppendRequest(inst.req[:0], req)
	answer, err := inst.call(ctx, inst.handle, inst.req, p.timeout)
	if err != nil {
		return v, withOutput(p.callError(ctx, err, p.timeout), inst.output)
	}
	if err := abi.DecodeVerdict(answer, &v); err != nil {
		return v, fmt.Errorf("bad output: the answer is not a Verdict: %w", err)
	}
	if v.Failure != "" { // "panicked at rcpt: ..." from the Go SDK
		return abi.Verdict{}, errors.New(firstLine(v.Failure))
	}
	if err := checkVerdict(&v, req.Stage, p.permissions); err != nil {
		return v, fmt.Errorf("bad output: %w", err)
	}
	return v, nil
}

// callError says why a call with this timeout failed: the plugin ran out
// of time, the caller gave up, or the guest trapped.
func (p *Plugin) callError(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(err, errDeadline) {
		return fmt.Errorf("timed out after %s", timeout)
	}
	if errors.Is(err, errDepth) {
		// A stack_limit is a power of two of 256 KiB or more: whole pages.
		return fmt.Errorf("%w: its calls would take more than its stack_limit of %s; raise stack_limit if the plugin needs it",
			errDepth, pagesSize(p.stackLimit/pageSize))
	}
	var exit *sys.ExitError // how the deadlineCCD mode stops a call
	if errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded && ctx.Err() == nil {
		return fmt.Errorf("timed out after %s", timeout)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("cancelled: %w", ctx.Err())
	}
	return fmt.Errorf("trapped: %w", err)
}

// withOutput adds what the guest last wrote to stdout or stderr, if
// anything, to its failure.
func withOutput(err error, t *capture) error {
	if out := strings.TrimSpace(t.String()); out != "" {
		return fmt.Errorf("%w; it wrote: %s", err, out)
	}
	return err
}

// Close waits for calls in progress to end (until ctx is done) and then
// releases the plugin's instances and compiled code.
func (p *Plugin) Close(ctx context.Context) error {
	var err error
	p.closeOnce.Do(func() {
		close(p.closed)
		idle := 0
	drain:
		for range cap(p.pool) {
			select {
			case inst := <-p.pool:
				if inst != nil {
					inst.close(ctx)
				}
				idle++
			case <-ctx.Done():
				break drain
			}
		}
		err = p.rt.Close(context.WithoutCancel(ctx))
		p.host.http.close()
		// An instance still running keeps its memory mapped (memory.go),
		// its pages released.
		if idle == cap(p.pool) {
			p.memory.release()
		}
	})
	return err
}

// firstLine is s up to its first line break, at most 512 bytes: what a
// guest says of its failure goes into one log line.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.ToValidUTF8(s[:min(len(s), 512)], "")
}
