package plugin

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// Chain is the plugins in the order gateway.toml lists them.
type Chain struct {
	plugins []*Plugin
	stages  abi.StageSet // every stage some plugin is called at
}

// NewChain returns a chain that calls the plugins in this order. It takes
// ownership: closing the chain closes them.
func NewChain(plugins ...*Plugin) *Chain {
	c := &Chain{plugins: plugins}
	for _, p := range plugins {
		c.stages |= p.stages
	}
	return c
}

// Handles reports whether any plugin of the chain is called at st: at
// other stages there is nothing to ask, so nothing need be prepared.
func (c *Chain) Handles(st abi.Stage) bool { return c.stages.Has(st) }

// Plugins returns the chain's plugins in order.
func (c *Chain) Plugins() []*Plugin { return c.plugins }

// Close closes every plugin of the chain.
func (c *Chain) Close(ctx context.Context) error {
	var errs []error
	for _, p := range c.plugins {
		errs = append(errs, p.Close(ctx))
	}
	return errors.Join(errs...)
}

// Outcome is what the chain decided at one stage.
type Outcome struct {
	// Action is Continue when no plugin decided, or Accept, Reject,
	// Tempfail or Discard.
	Action abi.Action
	// Reply is the SMTP reply for Reject and Tempfail.
	Reply *smtp.SMTPError
	// Destination is where the recipient goes (rcpt): the last one set, in
	// chain order.
	Destination string
	// Quarantine is the reason of the first plugin that quarantined the
	// message, or "".
	Quarantine    string
	AddHeaders    []abi.Header
	RemoveHeaders []string
	Findings      []abi.Finding
	// Verdicts has one record per plugin called, for the message's log line.
	Verdicts []Record
}

// Record is what one plugin answered.
type Record struct {
	Name     string
	Action   abi.Action // what the chain took from it: Continue when a failure was skipped
	Duration time.Duration
	Err      error // the plugin's failure, if it failed
	// Findings are the plugin's, kept per plugin so that a transaction's
	// score adds up every stage's.
	Findings []abi.Finding
}

// Run asks the plugins subscribed to req.Stage, in order, until one
// decides. Continue passes to the next plugin; Quarantine is recorded and
// passes too; Accept stops the chain and lets the stage pass; Reject,
// Tempfail and Discard stop it with that action. Changes accumulate from
// every plugin that answered. A failing plugin's OnFailure applies. At
// StageClose every subscribed plugin is told and verdicts are ignored.
//
// msg is the message, which plugins read through host functions at
// StageData; at other stages it is ignored and may be nil.
func (c *Chain) Run(ctx context.Context, req *abi.Request, msg *Message) Outcome {
	var o Outcome
	if req.Stage != abi.StageData {
		msg = nil
	}
	for _, p := range c.plugins {
		if !p.stages.Has(req.Stage) {
			continue
		}
		start := time.Now()
		v, err := p.handle(p.callContext(ctx, msg), req)
		rec := Record{Name: p.name, Action: v.Action, Duration: time.Since(start), Err: err, Findings: v.Findings}
		if err != nil {
			rec.Action = abi.Continue
			if p.onFailure == Tempfail && req.Stage != abi.StageClose {
				rec.Action = abi.Tempfail
			}
			level := slog.LevelWarn
			if ctx.Err() != nil {
				level = slog.LevelDebug // the caller gave up: not the plugin's fault
			}
			p.logger.Log(ctx, level, "plugin failed", "stage", req.Stage.String(), "session", req.SessionID,
				"on_failure", p.onFailure.String(), "error", err)
			o.Verdicts = append(o.Verdicts, rec)
			if rec.Action == abi.Tempfail {
				o.Action, o.Reply = abi.Tempfail, failureReply(p.name)
				return o
			}
			continue
		}
		o.Verdicts = append(o.Verdicts, rec)
		if req.Stage == abi.StageClose {
			continue
		}
		o.take(p.name, &v)
		if o.Action != abi.Continue {
			return o
		}
	}
	return o
}

// take adds a plugin's verdict to the outcome.
func (o *Outcome) take(plugin string, v *abi.Verdict) {
	if v.Destination != "" {
		o.Destination = v.Destination
	}
	o.AddHeaders = append(o.AddHeaders, v.AddHeaders...)
	o.RemoveHeaders = append(o.RemoveHeaders, v.RemoveHeaders...)
	o.Findings = append(o.Findings, v.Findings...)
	switch v.Action {
	case abi.Quarantine:
		if o.Quarantine == "" {
			o.Quarantine = v.Text
			if o.Quarantine == "" {
				o.Quarantine = "quarantined by " + plugin
			}
		}
	case abi.Reject, abi.Tempfail:
		o.Action, o.Reply = v.Action, reply(plugin, v)
	case abi.Accept, abi.Discard:
		o.Action = v.Action
	}
}
