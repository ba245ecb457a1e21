package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dsn"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// newNotifier makes what tells senders (DSNs) and owners (notices) of
// what the queue could not deliver, queueing them in q. It lives as long
// as the queue, one per process; each DSN is signed with the keys of the
// generation in use when it is made.
func (g *Gateway) newNotifier(cfg *config.Config, q *queue.Queue) queue.Notifier {
	return dsn.New(dsn.Config{
		Hostname:     cfg.Hostname,
		Queue:        q,
		Signer:       g.currentSigner,
		Domain:       cfg.DKIM.Domain,
		MaxAge:       cfg.Queue.MaxAge.D(),
		Limit:        cfg.Queue.DSNLimit,
		OwnerNotices: cfg.Queue.OwnerNotices,
		SRSDomain:    cfg.SRS.Domain,
		Log:          g.log,
		Count:        func(kind, result string) { g.metrics.dsn.WithLabelValues(kind, result).Inc() },
	})
}

// newDSNCounter registers sluice_dsn_total, every series at 0.
func newDSNCounter(r prometheus.Registerer) *prometheus.CounterVec {
	c := promauto.With(r).NewCounterVec(prometheus.CounterOpts{Name: "sluice_dsn_total",
		Help: "DSNs to senders and notices to owners about queued mail that failed, by kind (failure, delay, notice) and result: queued, suppressed (null_sender, backscatter: neither SPF nor DMARC authenticated the sender, not_forward: about our own DSN, notice or report, rate: queue.dsn_limit) or failed."},
		[]string{"kind", "result"})
	for _, k := range dsn.Kinds {
		for _, r := range dsn.Results {
			c.WithLabelValues(k, r)
		}
	}
	return c
}

// currentSigner is the DKIM signer of the generation in use; nil without
// [[dkim.key]] or once the gateway is closed.
func (g *Gateway) currentSigner() *dkim.Signer {
	gen := g.gens.Acquire()
	if gen == nil {
		return nil
	}
	defer gen.Release()
	return gen.Signer // memory only: it outlives the generation safely
}
