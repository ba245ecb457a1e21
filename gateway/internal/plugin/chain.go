package plugin

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// Chain is the plugins in the order gateway.toml lists them.
type Chain struct {
	plugins []*Plugin
	missing []Missing
	stages  abi.StageSet // every stage some plugin is called at, or would be but is missing
	loaded  []*Plugin    // made by For: the plugins of every service (Loaded)
}

// Missing is a plugin left out of a chain because it failed to load and
// its on_failure is skip. The chain remembers it: at the stages it would
// have been called at, every Outcome names it in Skipped, as it does a
// plugin that fails there, so that no one takes the chain's silence for
// the plugin's answer.
type Missing struct {
	Name     string
	Stages   abi.StageSet // where it would have been called
	Services []string     // and in which services (Spec.Services)
}

// NewChain returns a chain that calls the plugins in this order. It takes
// ownership: closing the chain closes them.
func NewChain(plugins ...*Plugin) *Chain { return NewPartialChain(nil, plugins...) }

// NewPartialChain is NewChain for a chain that lacks the missing plugins.
func NewPartialChain(missing []Missing, plugins ...*Plugin) *Chain {
	c := &Chain{plugins: plugins, missing: missing}
	for _, p := range plugins {
		c.stages |= p.stages
	}
	for _, m := range missing {
		c.stages |= m.Stages
	}
	return c
}

// Handles reports whether any plugin of the chain is called at st, or
// would be but is missing: at other stages there is nothing to ask, so
// nothing need be prepared.
func (c *Chain) Handles(st abi.Stage) bool { return c.stages.Has(st) }

// Missing returns the plugins left out of the chain.
func (c *Chain) Missing() []Missing { return c.missing }

// Plugins returns the chain's plugins in order.
func (c *Chain) Plugins() []*Plugin { return c.plugins }

// For returns the chain of the plugins that run in service (their
// Spec.Services name it), in the same order, and of the missing plugins
// that would have. The two chains share those plugins: one set of
// instances serves both, within the one memory bound. Closing either
// closes the shared plugins, which close once (Plugin.Close), so a
// generation closes each of its chains and every plugin goes once.
func (c *Chain) For(service string) *Chain {
	var plugins []*Plugin
	var missing []Missing
	for _, p := range c.plugins {
		if slices.Contains(p.info.Services, service) {
			plugins = append(plugins, p)
		}
	}
	for _, m := range c.missing {
		if slices.Contains(m.Services, service) {
			missing = append(missing, m)
		}
	}
	sub := NewPartialChain(missing, plugins...)
	sub.loaded = c.Loaded()
	return sub
}

// Loaded returns every plugin loaded with the chain: for a chain made by
// For, also those of the other services, each once, in the order of the
// chain For was called on (gateway.toml's). What runs, for listings.
func (c *Chain) Loaded() []*Plugin {
	if c.loaded != nil {
		return c.loaded
	}
	return c.plugins
}

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
	// Reply is the SMTP reply for Reject and Tempfail, and for Discard the
	// 250 that the client gets for the message it believes delivered.
	Reply *smtp.SMTPError
	// Destinations are where the recipient goes (rcpt): those of the last
	// verdict that set any, in chain order (abi.Verdict.DestinationList).
	Destinations []string
	// Quarantine is the reason of the first plugin that quarantined the
	// message, or "".
	Quarantine    string
	AddHeaders    []abi.Header
	RemoveHeaders []string
	Findings      []abi.Finding
	// DecidedBy names the plugin whose verdict (or failure, with
	// on_failure tempfail) set Action; "" when Action is Continue.
	DecidedBy string
	// Skipped names the plugins of this stage whose answer is missing: a
	// call that failed and was skipped (on_failure skip), or a plugin
	// left out of the chain (Missing). The outcome may lack what they
	// would have said, a destination for instance.
	Skipped []string
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
// Each plugin's request carries req.Findings and then the findings of the
// plugins before it in this run (abi.AddFindings), so that a plugin that
// weighs a total, plugins/spam, sees what they found; req itself is not
// changed.
//
// msg is the message, which plugins read through host functions at
// StageData; at other stages it is ignored and may be nil.
func (c *Chain) Run(ctx context.Context, req *abi.Request, msg *Message) Outcome {
	var o Outcome
	if req.Stage != abi.StageData {
		msg = nil
	}
	shared := req
	if req.Stage != abi.StageClose {
		for _, m := range c.missing {
			if m.Stages.Has(req.Stage) {
				o.Skipped = append(o.Skipped, m.Name)
			}
		}
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
				o.Action, o.Reply, o.DecidedBy = abi.Tempfail, FailureReply(p.name), p.name
				return o
			}
			if req.Stage != abi.StageClose {
				o.Skipped = append(o.Skipped, p.name)
			}
			continue
		}
		o.Verdicts = append(o.Verdicts, rec)
		if req.Stage == abi.StageClose {
			continue
		}
		o.take(p.name, &v)
		if len(v.Findings) > 0 {
			req = withFindings(req, shared, p.name, v.Findings)
		}
		if o.Action != abi.Continue {
			o.DecidedBy = p.name
			return o
		}
	}
	return o
}

// withFindings returns req with a plugin's findings added, for the next
// plugins of the run. The first time (req is still the caller's shared
// request) it copies the request and its findings, which the caller
// keeps.
func withFindings(req, shared *abi.Request, plugin string, found []abi.Finding) *abi.Request {
	if req == shared {
		r := *req
		r.Findings = slices.Clone(req.Findings)
		req = &r
	}
	req.Findings = abi.AddFindings(req.Findings, plugin, found)
	return req
}

// take adds a plugin's verdict to the outcome.
func (o *Outcome) take(plugin string, v *abi.Verdict) {
	if dests := v.DestinationList(); len(dests) > 0 {
		o.Destinations = dests
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
	case abi.Discard:
		o.Action, o.Reply = v.Action, dropReply(v)
	case abi.Accept:
		o.Action = v.Action
	}
}
