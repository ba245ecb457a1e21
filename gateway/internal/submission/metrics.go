package submission

import "github.com/prometheus/client_golang/prometheus"

// Metrics count the logins. The gateway makes them once per process and
// hands them to every generation's Users; a nil *Metrics counts nothing.
type Metrics struct {
	logins *prometheus.CounterVec
}

// The results a login is counted under.
const (
	resultSuccess   = "success"
	resultFailure   = "failure"
	resultThrottled = "throttled"
	resultError     = "error"
)

// NewMetrics registers the logins' metrics with r.
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_submission_logins_total",
		Help: "Logins to the submission service by result: success, failure (bad name or password: 535), throttled (too many failures from the client or for the user: 454), error (the failure counters could not be read or written: 454)."},
		[]string{"result"})}
	r.MustRegister(m.logins)
	// Every series from the start, at 0, so that an alert on failures has
	// something to read before the first one.
	for _, res := range []string{resultSuccess, resultFailure, resultThrottled, resultError} {
		m.logins.WithLabelValues(res)
	}
	return m
}

func (m *Metrics) count(result string) {
	if m != nil {
		m.logins.WithLabelValues(result).Inc()
	}
}
