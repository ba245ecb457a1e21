package rediskv

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count the store's calls. The gateway registers them when it
// starts; a nil *Metrics counts nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the store's metrics with r.
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_kv_redis_requests_total",
			Help: "Calls of the plugins' key-value store to Redis, by op (get, set, delete, incr) and result: ok, error (Redis refused or could not be reached), timeout (no answer within redis_timeout)."},
			[]string{"op", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_kv_redis_seconds",
			Help:    "How long the key-value store's calls to Redis took, by op, failures included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}},
			[]string{"op"}),
	}
	r.MustRegister(m.requests, m.latency)
	// Every series from the start, at 0, so that a rate or an alert on
	// errors has something to read before the first one.
	for _, op := range []string{"get", "set", "delete", "incr"} {
		for _, result := range []string{"ok", "error", "timeout"} {
			m.requests.WithLabelValues(op, result)
		}
		m.latency.WithLabelValues(op)
	}
	return m
}

// observe counts one call of op that began at start.
func (m *Metrics) observe(op, result string, start time.Time) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(op, result).Inc()
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
