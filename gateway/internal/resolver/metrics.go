package resolver

import (
	"errors"
	"net"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-mail/sluice/gateway/internal/metrics"
)

// lookupMetrics count the questions that went to the nameservers: answers
// from the cache or the static records cost nothing worth watching.
type lookupMetrics struct {
	lookups *prometheus.CounterVec
	seconds *prometheus.HistogramVec
}

// Outcomes of a lookup that got no usable reply, as the rcode label names
// them beside the reply codes (NOERROR, NXDOMAIN, SERVFAIL, ...).
const (
	outcomeTimeout = "timeout" // no nameserver answered in time
	outcomeError   = "error"   // a network error, or an answer that made no sense
)

// watchedTypes are the types Sluice itself asks for (MX and addresses to
// relay, TXT for SPF, DKIM and DMARC, PTR for the client's name): their
// series show from the start.
var watchedTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypePTR}

func newLookupMetrics(r prometheus.Registerer) *lookupMetrics {
	f := promauto.With(r)
	m := &lookupMetrics{
		lookups: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_dns_lookups_total",
			Help: "Questions sent to the nameservers (not answered from the cache or static records), by type and outcome: the reply code (NOERROR, NXDOMAIN, SERVFAIL, ...), timeout, or error."},
			[]string{"type", "rcode"}),
		seconds: f.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_dns_lookup_seconds",
			Help: "Time a question sent to the nameservers took to be answered or given up on, retries included, by type.", Buckets: metrics.DefaultBuckets},
			[]string{"type"}),
	}
	for _, t := range watchedTypes {
		name := dns.Type(t).String()
		m.seconds.WithLabelValues(name)
		for _, rcode := range []string{"NOERROR", "NXDOMAIN", "SERVFAIL", outcomeTimeout, outcomeError} {
			m.lookups.WithLabelValues(name, rcode)
		}
	}
	return m
}

// lookup counts one question of type qtype that ended with err (nil:
// NOERROR) after took.
func (m *lookupMetrics) lookup(qtype uint16, err *net.DNSError, took time.Duration) {
	name := dns.Type(qtype).String()
	m.lookups.WithLabelValues(name, outcome(err)).Inc()
	m.seconds.WithLabelValues(name).Observe(took.Seconds())
}

// outcome names how a lookup ended, as the rcode label does.
func outcome(err *net.DNSError) string {
	if err == nil {
		return "NOERROR"
	}
	if rc, ok := errors.AsType[rcodeError](err); ok {
		if s, known := dns.RcodeToString[int(rc)]; known {
			return s
		}
		return outcomeError
	}
	switch {
	case err.IsNotFound:
		return "NXDOMAIN"
	case err.IsTimeout:
		return outcomeTimeout
	}
	return outcomeError
}
