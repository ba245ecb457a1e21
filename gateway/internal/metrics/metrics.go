// Package metrics makes the registry the gateway's parts register their
// metrics on, and serves it over HTTP. The metrics themselves are
// github.com/prometheus/client_golang's types, used directly by the part
// that counts.
//
// Each gateway has its own registry: nothing is registered on the
// library's global default one, so that two gateways in one process (as
// in tests) count apart.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-mail/sluice/gateway/internal/buildinfo"
)

// NewRegistry returns a registry holding what every Prometheus user
// expects of a Go program: the process collector (CPU, memory, open
// files), the Go runtime collector and sluice_build_info, which shows b.
func NewRegistry(b buildinfo.Info) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "sluice_build_info",
			Help:        "Always 1; its labels say which build runs: version, revision, the Go version that built it and what makes its RSA signatures.",
			ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion, "rsa_signer": b.RSASigner},
		}, func() float64 { return 1 }),
	)
	return r
}

// Handler serves what g gathers, in the format the scraper asks for: the
// OpenMetrics text format when its Accept header offers it, the Prometheus
// text format 0.0.4 otherwise. A failure to gather one metric is logged
// and the rest is served.
func Handler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
		ErrorLog:          errorLog{log},
	})
}

// errorLog passes promhttp's errors on to the gateway's log.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) {
	if l.log != nil {
		l.log.Warn("serving metrics", "err", fmt.Sprint(v...))
	}
}

// DefaultBuckets are upper bounds in seconds for latencies from 50 µs to
// 10 s: a plugin call is tens of microseconds, a relayed message seconds.
var DefaultBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
