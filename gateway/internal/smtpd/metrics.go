package smtpd

import (
	"errors"
	"strconv"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/metrics"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// serverMetrics are what the inbound side counts, registered once per
// server on the registry the gateway gives it.
type serverMetrics struct {
	sessions     *metrics.Counter
	openSessions *metrics.Gauge
	messages     *metrics.CounterVec
	stages       *metrics.HistogramVec
	calls        *metrics.HistogramVec
	failures     *metrics.CounterVec
	relayReplies *metrics.CounterVec
	recipients   *metrics.CounterVec
}

// Message outcomes, as the messages counter labels them; the recipients
// counter says forwarded (log.go) for delivered.
const (
	outcomeDelivered  = "delivered"
	outcomeRejected   = "rejected"
	outcomeTempfailed = "tempfailed"
	outcomeDropped    = "dropped"
)

func newServerMetrics(r *metrics.Registry) *serverMetrics {
	m := &serverMetrics{
		sessions:     r.Counter("sluice_sessions_total", "SMTP sessions accepted at their first HELO or EHLO.").With(),
		openSessions: r.Gauge("sluice_sessions_current", "SMTP sessions open now.").With(),
		messages: r.Counter("sluice_messages_total",
			"Messages by outcome: delivered (the destination said 2xx), rejected (5xx), tempfailed (4xx), dropped (discarded by policy).",
			"outcome"),
		stages: r.Histogram("sluice_stage_seconds",
			"Time the whole filter chain took at each stage.", nil, "stage"),
		calls: r.Histogram("sluice_plugin_call_seconds",
			"Time each plugin took per call, by plugin and stage.", nil, "plugin", "stage"),
		failures: r.Counter("sluice_plugin_failures_total",
			"Plugin calls that failed (trap, timeout, bad output, refused load of an instance), by plugin and stage.",
			"plugin", "stage"),
		relayReplies: r.Counter("sluice_relay_replies_total",
			"Replies the relay passed on from destinations, by step (mail, rcpt, data) and class (2xx, 4xx, 5xx); a destination that cannot be reached counts as 4xx.",
			"step", "class"),
		recipients: r.Counter("sluice_recipients_total",
			"Recipients by what became of them (forwarded, rejected, tempfailed, dropped) and who decided (host, plugin, destination). "+
				"A recipient refused at RCPT counts then; one accepted counts with its message's reply to DATA.",
			"outcome", "decided_by"),
	}
	// Every outcome shows from the start, so that rates work from zero.
	for _, o := range []string{outcomeDelivered, outcomeRejected, outcomeTempfailed, outcomeDropped} {
		m.messages.With(o)
	}
	for _, o := range []string{outcomeForwarded, outcomeRejected, outcomeTempfailed, outcomeDropped} {
		for _, by := range []string{deciderHost, deciderPlugin, deciderDestination} {
			m.recipients.With(o, by)
		}
	}
	return m
}

// transaction counts what became of a transaction's message and of each
// of its recipients, when it ends. A recipient accepted in a transaction
// that ended without a reply to DATA (RSET, QUIT) has no outcome and is
// not counted.
func (m *serverMetrics) transaction(t *transaction) {
	if t.data {
		m.messages.With(messageOutcome(t)).Inc()
	}
	for _, d := range t.decisions {
		switch {
		case d.reply != nil:
			m.recipients.With(replyOutcome(d.reply), d.by.kind).Inc()
		case !t.data:
		case t.result.Code/100 == 2 && d.by.kind == deciderPlugin:
			// Dropped at RCPT, its message accepted.
			m.recipients.With(outcomeDropped, deciderPlugin).Inc()
		default:
			m.recipients.With(t.outcome(), t.resultBy.kind).Inc()
		}
	}
}

// messageOutcome names what happened to a message, as the messages
// counter says it.
func messageOutcome(t *transaction) string {
	if t.dropped {
		return outcomeDropped
	}
	return outcome(t.result)
}

// replyOutcome is the outcome a refusal gives a recipient.
func replyOutcome(reply *smtp.SMTPError) string {
	if reply.Code/100 == 4 {
		return outcomeTempfailed
	}
	return outcomeRejected
}

// outcome names what happened to a message from the reply its client got.
func outcome(reply *smtp.SMTPError) string {
	switch {
	case reply.Code/100 == 2:
		return outcomeDelivered
	case reply.Code/100 == 4:
		return outcomeTempfailed
	}
	return outcomeRejected
}

// chainRun records one run of the chain at a stage.
func (m *serverMetrics) chainRun(st abi.Stage, took time.Duration, verdicts []plugin.Record) {
	stage := st.String()
	m.stages.With(stage).Observe(took.Seconds())
	for _, v := range verdicts {
		m.calls.With(v.Name, stage).Observe(v.Duration.Seconds())
		if v.Err != nil {
			m.failures.With(v.Name, stage).Inc()
		}
	}
}

// relayReply counts the class of what the relay answered at a step: nil
// is success, anything else an SMTP reply or, failing that, a 4xx.
func (m *serverMetrics) relayReply(step string, err error) {
	class := "2xx"
	if err != nil {
		class = "4xx"
		if e, ok := errors.AsType[*smtp.SMTPError](err); ok && e.Code >= 200 && e.Code < 600 {
			class = strconv.Itoa(e.Code/100) + "xx"
		}
	}
	m.relayReplies.With(step, class).Inc()
}
