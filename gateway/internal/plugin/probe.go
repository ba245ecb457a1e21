package plugin

import (
	"context"
	"fmt"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// Probe is one instance of a loaded plugin, started apart from its pool,
// for the ABI conformance kit (sluice plugin check): it sends requests as
// the bytes given, so that the kit can send the short requests of older
// hosts, and it reports the instance's memory. Its calls are the chain's
// calls in all else: the same deadline, host functions and verdict checks.
// A failed call discards the instance; the next call starts a new one.
type Probe struct {
	p    *Plugin
	inst *instance
}

// Probe starts and configures a new instance of p.
func (p *Plugin) Probe(ctx context.Context) (*Probe, error) {
	inst, err := p.start(ctx)
	if err != nil {
		return nil, err
	}
	return &Probe{p: p, inst: inst}, nil
}

// Handle sends req, an encoded Request of stage, and returns the checked
// verdict. msg is what the host functions read at the data stage. Like the
// pool, it discards the instance after any failure.
func (pr *Probe) Handle(ctx context.Context, stage abi.Stage, req []byte, msg *Message) (abi.Verdict, error) {
	if pr.inst == nil {
		inst, err := pr.p.start(ctx)
		if err != nil {
			return abi.Verdict{}, fmt.Errorf("replacing a failed instance: %w", err)
		}
		pr.inst = inst
	}
	v, err := pr.decide(ctx, stage, req, msg)
	if err != nil {
		pr.Close(context.WithoutCancel(ctx))
	}
	return v, err
}

// decide is Plugin.decide for a request already encoded.
func (pr *Probe) decide(ctx context.Context, stage abi.Stage, req []byte, msg *Message) (abi.Verdict, error) {
	var v abi.Verdict
	if stage != abi.StageData {
		msg = nil
	}
	answer, err := pr.inst.call(pr.p.callContext(ctx, msg), pr.inst.handle, req, pr.p.timeout)
	if err != nil {
		return v, withOutput(pr.p.callError(ctx, err, pr.p.timeout), pr.inst.output)
	}
	if err := abi.DecodeVerdict(answer, &v); err != nil {
		return v, fmt.Errorf("bad output: the answer is not a Verdict: %w", err)
	}
	if err := checkVerdict(&v, stage, pr.p.permissions); err != nil {
		return v, fmt.Errorf("bad output: %w", err)
	}
	return v, nil
}

// MemorySize returns the size of the instance's linear memory in bytes, or
// 0 after a failed call.
func (pr *Probe) MemorySize() uint32 {
	if pr.inst == nil {
		return 0
	}
	return pr.inst.mem.Size()
}

// Close discards the instance.
func (pr *Probe) Close(ctx context.Context) {
	if pr.inst != nil {
		pr.inst.close(ctx)
		pr.inst = nil
	}
}
