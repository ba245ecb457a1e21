package queue

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the queue's metrics. They are registered when the gateway
// starts, before the queue is open (sluice check never opens it): the
// gauges read the queue given to Open, if any, at each scrape.
type Metrics struct {
	attempts *prometheus.CounterVec
	queue    atomic.Pointer[Queue]
}

var (
	sizeDesc = prometheus.NewDesc("sluice_queue_messages",
		"Messages in the queue, by kind (forward, dsn, notice, report) and held (true, false).", []string{"kind", "held"}, nil)
	bytesDesc = prometheus.NewDesc("sluice_queue_bytes",
		"Bytes of the messages in the queue.", nil, nil)
	oldestDesc = prometheus.NewDesc("sluice_queue_oldest_seconds",
		"Age of the oldest message in the queue, in seconds (since it arrived); 0 when the queue is empty.", nil, nil)
)

// NewMetrics registers the queue's metrics with r.
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_queue_attempts_total",
		Help: "What became of queued recipients at each delivery attempt: delivered (2xx), deferred (4xx or no reply), failed (5xx), expired."},
		[]string{"result"})}
	for _, o := range []string{outDelivered, outDeferred, outFailed, outExpired} {
		m.attempts.WithLabelValues(o)
	}
	r.MustRegister(m.attempts, m)
	return m
}

// attempted counts recipients by outcome. m may be nil.
func (m *Metrics) attempted(counts map[string]int) {
	if m == nil {
		return
	}
	for o, n := range counts {
		if n > 0 {
			m.attempts.WithLabelValues(o).Add(float64(n))
		}
	}
}

// Describe is prometheus.Collector's.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- sizeDesc
	ch <- bytesDesc
	ch <- oldestDesc
}

// Collect is prometheus.Collector's: the gauges, from the queue as it
// is now.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	type key struct {
		kind Kind
		held bool
	}
	counts := map[key]int{}
	for _, k := range []Kind{Forward, DSN, Notice, Report} {
		counts[key{k, false}], counts[key{k, true}] = 0, 0
	}
	var bytes int
	var oldest time.Duration
	if q := m.queue.Load(); q != nil {
		now := q.opts.Now()
		q.mu.Lock()
		for _, e := range q.entries {
			counts[key{e.m.Kind, e.m.Held}]++
			bytes += e.size
			oldest = max(oldest, now.Sub(e.m.Arrived))
		}
		q.mu.Unlock()
	}
	for k, n := range counts {
		held := "false"
		if k.held {
			held = "true"
		}
		ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(n), string(k.kind), held)
	}
	ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, oldest.Seconds())
}
