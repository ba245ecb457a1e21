package smtpd

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
)

// decision is what became of one recipient at RCPT: the reply it got (nil:
// accepted) and who decided.
type decision struct {
	rcpt  string
	reply *smtp.SMTPError
	by    decider
}

// decider is who made a decision: the host's own rules, a plugin, the
// destination (its reply, or its being out of reach), or the queue (it
// took the message for destinations not relayed in session, or failed to).
type decider struct {
	kind   string // deciderHost, deciderPlugin, deciderDestination or deciderQueue
	plugin string // the plugin's name
}

const (
	deciderHost        = "host"
	deciderPlugin      = "plugin"
	deciderDestination = "destination"
	deciderQueue       = "queue"
)

var (
	byHost        = decider{kind: deciderHost}
	byDestination = decider{kind: deciderDestination}
	byQueue       = decider{kind: deciderQueue}
)

// String is "host", "destination", "queue" or "plugin:<name>".
func (d decider) String() string {
	if d.kind == deciderPlugin {
		return deciderPlugin + ":" + d.plugin
	}
	return d.kind
}

// pluginDecider is the plugin that decided a stage's outcome.
func pluginDecider(out plugin.Outcome) decider {
	return decider{kind: deciderPlugin, plugin: out.DecidedBy}
}

// dropper is who dropped the first recipient dropped at RCPT.
func (t *transaction) dropper() decider {
	for _, d := range t.decisions {
		if d.reply == nil && d.by.kind == deciderPlugin {
			return d.by
		}
	}
	return decider{kind: deciderPlugin}
}

// Transaction outcomes, as the log line says them and the recipients
// counter labels them.
const (
	outcomeForwarded = "forwarded"
	outcomeQueued    = "queued" // every destination queued; the queue said 2xx
	outcomeNone      = "none"   // the transaction ended before its message was answered
)

// outcome is what became of the transaction's message.
func (t *transaction) outcome() string {
	switch {
	case t.result == nil:
		return outcomeNone
	case t.dropped:
		return outcomeDropped
	case t.result.Code/100 == 2 && t.resultBy.kind == deciderQueue:
		return outcomeQueued
	case t.result.Code/100 == 2:
		return outcomeForwarded
	}
	return replyOutcome(t.result)
}

// endTxn ends the transaction: its line is written, its recipients
// counted and its record kept, once, if anything was decided in it, and its relay closed.
// Every way a transaction ends comes here: the reply to DATA, a refused
// MAIL, a new MAIL, RSET, QUIT and the connection's end.
func (s *session) endTxn() {
	if t := &s.txn; t.result != nil || len(t.decisions) > 0 {
		s.srv.metrics.transaction(t) // first, so that whoever reads the line finds it counted
		s.logTxn()
		s.record()
	}
	if s.txn.relay != nil {
		s.txn.relay.Close()
	}
	s.txn = transaction{}
}

// logTxn writes the one line per transaction that says what happened
// (docs/operations.md, Logs). Each plugin's verdict reads
// "name@stage:action:duration", with "(failed)" after the action of a
// plugin that failed; chain is the number of the generation (chain, keys,
// settings) the session used.
// forwards and relay appear only for a message that left in session,
// queued only for one that was queued.
func (s *session) logTxn() {
	t := &s.txn
	var refused, plugins strings.Builder
	for _, d := range t.decisions {
		if d.reply == nil {
			continue
		}
		if refused.Len() > 0 {
			refused.WriteString("; ")
		}
		refused.WriteString(d.rcpt)
		refused.WriteString(" (")
		refused.WriteString(d.by.String())
		refused.WriteString("): ")
		refused.WriteString(replyText(d.reply))
	}
	for i, v := range t.verdicts {
		if i > 0 {
			plugins.WriteByte(',')
		}
		plugins.WriteString(v.Name)
		plugins.WriteByte('@')
		plugins.WriteString(v.stage.String())
		plugins.WriteByte(':')
		plugins.WriteString(v.Action.String())
		if v.Err != nil {
			plugins.WriteString("(failed)")
		}
		plugins.WriteByte(':')
		plugins.WriteString(v.Duration.Round(time.Microsecond).String())
	}
	outcome := t.outcome()
	// Attrs rather than key-value pairs: each value then goes in as it
	// is, where boxing it into an interface cost an allocation.
	attrs := make([]slog.Attr, 0, 24)
	attrs = append(attrs,
		slog.String("session", s.id), slog.String("client", s.clientIP.String()))
	if s.user != "" {
		attrs = append(attrs, slog.String("user", s.user))
	}
	attrs = append(attrs, slog.String("from", t.from),
		slog.String("rcpts", strings.Join(t.rcpts, ",")), slog.String("refused", refused.String()),
		slog.String("discarded", strings.Join(t.discarded, ",")), slog.Int("size", t.size), slog.String("outcome", outcome))
	if t.result != nil {
		attrs = append(attrs, slog.String("reply", replyText(t.result)), slog.String("decided_by", t.resultBy.String()))
	}
	attrs = append(attrs, slog.String("plugins", plugins.String()), slog.Uint64("chain", s.gen.N),
		slog.Int64("ms", time.Since(t.started).Milliseconds()))
	if outcome == outcomeForwarded {
		var dests strings.Builder
		for i, f := range t.forwards {
			if i > 0 {
				dests.WriteByte(',')
			}
			dests.WriteString(f.rcpt)
			dests.WriteString("->")
			dests.WriteString(f.dest)
		}
		attrs = append(attrs, slog.String("forwards", dests.String()), slog.String("relay", t.remote))
	}
	if len(t.queueIDs) > 0 {
		var q strings.Builder
		for i, f := range t.queued {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(f.rcpt + "->" + f.dest)
		}
		attrs = append(attrs, slog.String("queued", q.String()), slog.String("queue_ids", strings.Join(t.queueIDs, ",")))
	}
	if sc := t.score(); len(sc.symbols) > 0 {
		attrs = append(attrs, slog.String("score", sc.String()))
	}
	s.srv.log.LogAttrs(context.Background(), slog.LevelInfo, "message", attrs...)
}

// replyText is a reply as the client read it: "550 5.1.1 text".
func replyText(e *smtp.SMTPError) string { return relay.ReplyText(e) }
