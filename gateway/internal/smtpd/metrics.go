package smtpd

import (
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-mail/sluice/gateway/internal/metrics"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// serverMetrics are what the inbound side counts, registered once per
// server on the registry the gateway gives it.
type serverMetrics struct {
	sessions     prometheus.Counter
	openSessions prometheus.Gauge
	messages     *prometheus.CounterVec
	stages       *prometheus.HistogramVec
	calls        *prometheus.HistogramVec
	failures     *prometheus.CounterVec
	relayReplies *prometheus.CounterVec
	authResults  *prometheus.CounterVec
	tlsSessions  *prometheus.CounterVec
	recipients   *prometheus.CounterVec
	connsRefused *prometheus.CounterVec

	// The children of the counters above for every label value known in
	// advance, made at once (so that they show from zero) and found here
	// when counting: the vector's own lookup hashes the values and takes
	// its lock, about 100 ns, several times per message.
	messagesBy     map[string]prometheus.Counter    // by outcome
	recipientsBy   map[[2]string]prometheus.Counter // by outcome, decided_by
	relayRepliesBy map[[2]string]prometheus.Counter // by step, class
	tlsSessionsBy  map[[2]string]prometheus.Counter // by direction, version

	// seriesBy are the chain's and each plugin's series at each stage,
	// found in their vectors once per pair (chainRun counts several per
	// message) and made at their first use, as the vectors would.
	seriesMu sync.RWMutex
	seriesBy map[pluginStage]stageSeries
}

// pluginStage names a plugin's series at a stage; the plugin chainSeries
// is the whole chain's (no plugin has an empty name).
type pluginStage struct {
	plugin string
	stage  abi.Stage
}

const chainSeries = ""

// stageSeries are the series chainRun counts in: the time taken
// (stage_seconds for the chain, plugin_call_seconds for a plugin) and a
// plugin's failures.
type stageSeries struct {
	took     prometheus.Observer
	failures prometheus.Counter
}

// Message outcomes, as the messages counter labels them; the recipients
// counter says forwarded (log.go) for delivered.
const (
	outcomeDelivered  = "delivered"
	outcomeRejected   = "rejected"
	outcomeTempfailed = "tempfailed"
	outcomeDropped    = "dropped"
)

// authResultValues are the results each check can give (sdk/abi's Auth),
// shown at 0 from the start. DKIM's none is a message without signatures.
var authResultValues = map[string][]string{
	"spf":   {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"},
	"dkim":  {"pass", "fail", "neutral", "policy", "temperror", "permerror", "none"},
	"arc":   {"pass", "fail", "none"},
	"dmarc": {"pass", "fail", "none", "temperror", "permerror"},
}

// tlsNone is the version label of a session or connection without TLS.
const tlsNone = "none"

// newServerMetrics registers the server's metrics on r; nil registers
// them nowhere. The MX's are named sluice_*, the submission service's
// sluice_submission_*: the same families, for each service, on one
// registry.
func newServerMetrics(r prometheus.Registerer, submission bool) *serverMetrics {
	prefix := "sluice_"
	if submission {
		prefix = "sluice_submission_"
	}
	f := promauto.With(r)
	m := &serverMetrics{
		sessions:     f.NewCounter(prometheus.CounterOpts{Name: prefix + "sessions_total", Help: "SMTP sessions accepted at their first HELO or EHLO."}),
		openSessions: f.NewGauge(prometheus.GaugeOpts{Name: prefix + "sessions_current", Help: "SMTP sessions open now."}),
		messages: f.NewCounterVec(prometheus.CounterOpts{Name: prefix + "messages_total",
			Help: "Messages by outcome: delivered (the destination said 2xx), queued (every destination queued), rejected (5xx), tempfailed (4xx), dropped (discarded by policy)."},
			[]string{"outcome"}),
		stages: f.NewHistogramVec(prometheus.HistogramOpts{Name: prefix + "stage_seconds",
			Help: "Time the whole filter chain took at each stage.", Buckets: metrics.DefaultBuckets}, []string{"stage"}),
		calls: f.NewHistogramVec(prometheus.HistogramOpts{Name: prefix + "plugin_call_seconds",
			Help: "Time each plugin took per call, by plugin and stage.", Buckets: metrics.DefaultBuckets}, []string{"plugin", "stage"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{Name: prefix + "plugin_failures_total",
			Help: "Plugin calls that failed (trap, timeout, bad output, refused load of an instance), by plugin and stage."},
			[]string{"plugin", "stage"}),
		relayReplies: f.NewCounterVec(prometheus.CounterOpts{Name: prefix + "relay_replies_total",
			Help: "Replies the relay passed on from destinations, by step (mail, rcpt, data) and class (2xx, 4xx, 5xx); a destination that cannot be reached counts as 4xx."},
			[]string{"step", "class"}),
		authResults: f.NewCounterVec(prometheus.CounterOpts{Name: prefix + "auth_results_total",
			Help: "Messages checked, by method (spf, dkim, arc, dmarc) and result; dkim counts pass if any signature passed, else the first signature's result, none if unsigned."},
			[]string{"method", "result"}),
		tlsSessions: f.NewCounterVec(prometheus.CounterOpts{Name: prefix + "tls_sessions_total",
			Help: "TLS in use, by direction: inbound counts client sessions by the TLS version they ended with, outbound counts messages sent to destinations by the TLS version of the connection; none is plaintext."},
			[]string{"direction", "version"}),
		recipients: f.NewCounterVec(prometheus.CounterOpts{Name: prefix + "recipients_total",
			Help: "Recipients by what became of them (forwarded, queued, rejected, tempfailed, dropped) and who decided (host, plugin, destination, queue). " +
				"A recipient refused at RCPT counts then; one accepted counts with its message's reply to DATA."},
			[]string{"outcome", "decided_by"}),
		connsRefused: f.NewCounterVec(prometheus.CounterOpts{Name: prefix + "connections_refused_total",
			Help: "Connections answered 421 and closed before the greeting, by the limit they met: max_connections (all listeners together) or max_connections_per_ip."},
			[]string{"reason"}),
	}
	m.seriesBy = make(map[pluginStage]stageSeries)
	// Every known label value shows from the start, so that rates work
	// from zero.
	m.messagesBy = make(map[string]prometheus.Counter)
	for _, o := range []string{outcomeDelivered, outcomeQueued, outcomeRejected, outcomeTempfailed, outcomeDropped} {
		m.messagesBy[o] = m.messages.WithLabelValues(o)
	}
	for method, results := range authResultValues {
		for _, r := range results {
			m.authResults.WithLabelValues(method, r)
		}
	}
	m.tlsSessionsBy = make(map[[2]string]prometheus.Counter)
	for _, dir := range []string{"inbound", "outbound"} {
		for _, v := range []string{tlsNone, tlsVersion(tls.VersionTLS12), tlsVersion(tls.VersionTLS13)} {
			m.tlsSessionsBy[[2]string{dir, v}] = m.tlsSessions.WithLabelValues(dir, v)
		}
	}
	m.relayRepliesBy = make(map[[2]string]prometheus.Counter)
	for _, step := range []string{"mail", "rcpt", "data"} {
		for _, class := range []string{"2xx", "4xx", "5xx"} {
			m.relayRepliesBy[[2]string{step, class}] = m.relayReplies.WithLabelValues(step, class)
		}
	}
	m.recipientsBy = make(map[[2]string]prometheus.Counter)
	for _, o := range []string{outcomeForwarded, outcomeRejected, outcomeTempfailed, outcomeDropped} {
		for _, by := range []string{deciderHost, deciderPlugin, deciderDestination} {
			m.recipientsBy[[2]string{o, by}] = m.recipients.WithLabelValues(o, by)
		}
	}
	// The queue decides a recipient only by taking it, or by failing to.
	for _, o := range []string{outcomeQueued, outcomeTempfailed} {
		m.recipientsBy[[2]string{o, deciderQueue}] = m.recipients.WithLabelValues(o, deciderQueue)
	}
	for _, limit := range connectionLimits {
		m.connsRefused.WithLabelValues(limit)
	}
	return m
}

// transaction counts what became of a transaction's message and of each
// of its recipients, when it ends. A recipient accepted in a transaction
// that ended without a reply to DATA (RSET, QUIT) has no outcome and is
// not counted.
func (m *serverMetrics) transaction(t *transaction) {
	if t.data {
		m.message(messageOutcome(t)).Inc()
	}
	for _, d := range t.decisions {
		switch {
		case d.reply != nil:
			m.recipient(replyOutcome(d.reply), d.by.kind).Inc()
		case !t.data:
		case t.result.Code/100 == 2 && d.by.kind == deciderPlugin:
			// Dropped at RCPT, its message accepted.
			m.recipient(outcomeDropped, deciderPlugin).Inc()
		case t.result.Code/100 == 2 && d.by.kind == deciderQueue:
			// Every destination of it queued, its message accepted.
			m.recipient(outcomeQueued, deciderQueue).Inc()
		default:
			m.recipient(t.outcome(), t.resultBy.kind).Inc()
		}
	}
}

// message is the messages counter for an outcome.
func (m *serverMetrics) message(outcome string) prometheus.Counter {
	if c, ok := m.messagesBy[outcome]; ok {
		return c
	}
	return m.messages.WithLabelValues(outcome)
}

// recipient is the recipients counter for an outcome and a decider.
func (m *serverMetrics) recipient(outcome, by string) prometheus.Counter {
	if c, ok := m.recipientsBy[[2]string{outcome, by}]; ok {
		return c
	}
	return m.recipients.WithLabelValues(outcome, by)
}

// messageOutcome names what happened to a message, as the messages
// counter says it.
func messageOutcome(t *transaction) string {
	if t.dropped {
		return outcomeDropped
	}
	if t.outcome() == outcomeQueued {
		return outcomeQueued
	}
	return outcome(t.result)
}

// replyOutcome is the outcome a refusal (any reply but 2xx) gives a
// recipient or a message: tempfailed for 4xx, else rejected.
func replyOutcome(reply *smtp.SMTPError) string {
	if reply.Code/100 == 4 {
		return outcomeTempfailed
	}
	return outcomeRejected
}

// outcome names what happened to a message from the reply its client got.
func outcome(reply *smtp.SMTPError) string {
	if reply.Code/100 == 2 {
		return outcomeDelivered
	}
	return replyOutcome(reply)
}

// chainRun records one run of the chain at a stage.
func (m *serverMetrics) chainRun(st abi.Stage, took time.Duration, verdicts []plugin.Record) {
	m.series(chainSeries, st).took.Observe(took.Seconds())
	for _, v := range verdicts {
		s := m.series(v.Name, st)
		s.took.Observe(v.Duration.Seconds())
		if v.Err != nil {
			s.failures.Inc()
		}
	}
}

// series returns the series of a plugin (or of the chain) at a stage,
// making them at the first call. A plugin's failures show at 0 from its
// first call, so that their rate works from zero.
func (m *serverMetrics) series(name string, st abi.Stage) stageSeries {
	k := pluginStage{name, st}
	m.seriesMu.RLock()
	s, ok := m.seriesBy[k]
	m.seriesMu.RUnlock()
	if ok {
		return s
	}
	stage := st.String()
	if name == chainSeries {
		s = stageSeries{took: m.stages.WithLabelValues(stage)}
	} else {
		s = stageSeries{took: m.calls.WithLabelValues(name, stage), failures: m.failures.WithLabelValues(name, stage)}
	}
	m.seriesMu.Lock()
	m.seriesBy[k] = s
	m.seriesMu.Unlock()
	return s
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
	if c, ok := m.relayRepliesBy[[2]string{step, class}]; ok {
		c.Inc()
		return
	}
	m.relayReplies.WithLabelValues(step, class).Inc()
}

// authChecked counts the results of one message's checks, once each.
func (m *serverMetrics) authChecked(a abi.Auth) {
	m.authResults.WithLabelValues("spf", orNone(a.SPF.Result)).Inc()
	dkim := "none"
	for i, d := range a.DKIM {
		if i == 0 || d.Result == "pass" {
			dkim = d.Result
		}
		if d.Result == "pass" {
			break
		}
	}
	m.authResults.WithLabelValues("dkim", orNone(dkim)).Inc()
	m.authResults.WithLabelValues("arc", orNone(a.ARC.Result)).Inc()
	m.authResults.WithLabelValues("dmarc", orNone(a.DMARC.Result)).Inc()
}

func orNone(result string) string {
	if result == "" {
		return "none"
	}
	return result
}

// tlsUsed counts one session or message in a direction by the TLS version
// it used; 0 is none.
func (m *serverMetrics) tlsUsed(direction string, version uint16) {
	v := tlsNone
	if version != 0 {
		v = tlsVersion(version)
	}
	if c, ok := m.tlsSessionsBy[[2]string{direction, v}]; ok {
		c.Inc()
		return
	}
	m.tlsSessions.WithLabelValues(direction, v).Inc()
}

// tlsVersion names a TLS version as a label value: "TLS1.3".
func tlsVersion(v uint16) string { return strings.ReplaceAll(tls.VersionName(v), " ", "") }
