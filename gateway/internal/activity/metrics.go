package activity

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the store's metrics. They are registered when the gateway
// starts, before the store is open (sluice check never opens it), and
// read the counts of the store given to Open, if any, at each scrape.
type Metrics struct {
	store atomic.Pointer[Store]
}

var (
	writtenDesc = prometheus.NewDesc("sluice_activity_records_written_total",
		"Transaction records written to the activity database.", nil, nil)
	droppedDesc = prometheus.NewDesc("sluice_activity_records_dropped_total",
		"Transaction records dropped, by reason: full (the writer was behind), error (the database refused the batch: full disk, locked, PostgreSQL down, ...).",
		[]string{"reason"}, nil)
)

// NewMetrics registers the store's metrics with r.
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{}
	r.MustRegister(m)
	return m
}

// Describe is prometheus.Collector's.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- writtenDesc
	ch <- droppedDesc
}

// Collect is prometheus.Collector's.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	var c Counts
	if s := m.store.Load(); s != nil {
		c = s.Counts()
	}
	ch <- prometheus.MustNewConstMetric(writtenDesc, prometheus.CounterValue, float64(c.Written))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.DroppedFull), "full")
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.DroppedError), "error")
}
