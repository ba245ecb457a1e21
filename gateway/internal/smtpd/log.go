package smtpd

import (
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
		plugins.WriteString(v.Name + "@" + v.stage.String() + ":" + v.Action.String())
		if v.Err != nil {
			plugins.WriteString("(failed)")
		}
		plugins.WriteString(":" + v.Duration.Round(time.Microsecond).String())
	}
	outcome := t.outcome()
	attrs := make([]any, 0, 32)
	attrs = append(attrs,
		"session", s.id, "client", s.clientIP.String())
	if s.user != "" {
		attrs = append(attrs, "user", s.user)
	}
	attrs = append(attrs, "from", t.from,
		"rcpts", strings.Join(t.rcpts, ","), "refused", refused.String(),
		"discarded", strings.Join(t.discarded, ","), "size", t.size, "outcome", outcome)
	if t.result != nil {
		attrs = append(attrs, "reply", replyText(t.result), "decided_by", t.resultBy.String())
	}
	attrs = append(attrs, "plugins", plugins.String(), "chain", s.gen.N, "ms", time.Since(t.started).Milliseconds())
	if outcome == outcomeForwarded {
		var dests strings.Builder
		for i, f := range t.forwards {
			if i > 0 {
				dests.WriteByte(',')
			}
			dests.WriteString(f.rcpt + "->" + f.dest)
		}
		attrs = append(attrs, "forwards", dests.String(), "relay", t.remote)
	}
	if len(t.queueIDs) > 0 {
		var q strings.Builder
		for i, f := range t.queued {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(f.rcpt + "->" + f.dest)
		}
		attrs = append(attrs, "queued", q.String(), "queue_ids", strings.Join(t.queueIDs, ","))
	}
	if sc := t.score(); len(sc.symbols) > 0 {
		attrs = append(attrs, "score", sc.String())
	}
	s.srv.log.Info("message", attrs...)
}

// replyText is a reply as the client read it: "550 5.1.1 text".
func replyText(e *smtp.SMTPError) string { return relay.ReplyText(e) }
