package gateway

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/reports"
)

// newReports makes the DMARC and TLS reports of [reports], nil when both
// are off. Nothing is opened or started: Serve does that (startReports),
// so that sluice check, which builds a gateway beside a running one,
// touches no files.
func (g *Gateway) newReports(cfg *config.Config) *reports.Reports {
	if !cfg.Reports.DMARC && !cfg.Reports.TLS {
		return nil
	}
	discovery, _ := dmarc.ParseDiscovery(cfg.Auth.DMARCDiscovery) // validated with the config
	return reports.New(reports.Config{
		Dir:       cfg.DataPath("reports"),
		DMARC:     cfg.Reports.DMARC,
		TLS:       cfg.Reports.TLS,
		From:      cfg.Reports.From,
		OrgName:   cfg.Reports.OrgName,
		Hostname:  cfg.Hostname,
		Discovery: discovery,
		Resolver:  g.currentResolver,
		Signer:    g.currentSigner,
		Queue:     reportQueue{g},
		Dropped:   func(kind string) { g.metrics.reportsDropped.WithLabelValues(kind).Inc() },
		Sent:      func(kind string) { g.metrics.reportsSent.WithLabelValues(kind).Inc() },
		Logger:    g.log,
	})
}

// startReports starts recording and the daily sending (Serve), into
// the queue Listen opened.
func (g *Gateway) startReports(ctx context.Context) error {
	if g.reports == nil {
		return nil
	}
	if why := reportsUnaligned(g.cfg); why != "" {
		g.log.Warn("reports: receivers will discard them: "+why, "from", g.cfg.Reports.From, "dkim_domain", g.cfg.DKIM.Domain)
	}
	if g.queue != nil {
		g.reportsQueue = g.queue
	}
	return g.reports.Start(ctx, 0)
}

// reportsUnaligned says why reports from reports.from would not pass
// DMARC by our DKIM signature, "" when they would: RFC 9990 §3.5.2 wants
// a DMARC report to pass DMARC aligned, and RFC 8460 §3 a TLS report
// signed by the reporting domain, else receivers discard them. (SPF
// alone could align a DMARC report, but nothing here can tell.)
func reportsUnaligned(cfg *config.Config) string {
	_, from, _ := strings.Cut(cfg.Reports.From, "@")
	switch {
	case cfg.DKIM.Domain == "" || len(cfg.DKIM.Keys) == 0:
		return "they are not DKIM-signed (no [dkim] domain and key)"
	case !strings.EqualFold(dmarc.OrganizationalDomain(from), dmarc.OrganizationalDomain(cfg.DKIM.Domain)):
		return "reports.from is not at the DKIM domain's organization, so our signature does not align with it"
	}
	return ""
}

// errNoQueue is why a report cannot go before the gateway has a queue:
// its records stay, and are sent once one is there.
var errNoQueue = errors.New("no queue to send reports through")

// reportQueue is the queue reports go into: the gateway's, set when
// the reports start.
type reportQueue struct{ g *Gateway }

func (q reportQueue) Enqueue(ctx context.Context, m *queue.Message) error {
	if q.g.reportsQueue == nil {
		return errNoQueue
	}
	return q.g.reportsQueue.Enqueue(ctx, m)
}

// currentResolver is the current generation's resolver (as
// currentSigner is its signer), so that reports follow a reload as mail
// does; the gateway's own once it is closed.
func (g *Gateway) currentResolver() dmarc.Resolver {
	if gen := g.gens.Acquire(); gen != nil {
		defer gen.Release()
		if gen.DNS != nil {
			return gen.DNS
		}
	}
	return g.dns
}

// tlsResult counts a TLS check under a policy, and records every one
// for the TLS reports.
func (g *Gateway) tlsResult(c relay.TLSCheck) {
	if c.Policy != "" {
		g.metrics.tlsResult(c.Policy, c.Mode, c.Result)
	}
	if g.reports.TLSOn() {
		g.reports.TLS(tlsRecord(c))
	}
}

// tlsRecord is what a TLS report counts of a check: the policy as the
// destination domain published it (RFC 8460 §4.3.1: an MTA-STS policy,
// TLSA records, or none of its own: tls_security and REQUIRETLS are
// ours) and the result.
func tlsRecord(c relay.TLSCheck) reports.TLSRecord {
	rec := reports.TLSRecord{Domain: c.Domain, Type: "no-policy-found", Host: c.Host, Result: c.Result}
	if c.IP.IsValid() {
		rec.IP = c.IP.String()
	}
	switch {
	case c.Policy == "dane" && len(c.TLSA) > 0:
		rec.Type, rec.Policy = "tlsa", c.TLSA
	case c.STS != nil:
		rec.Type, rec.MX = "sts", c.STS.MX
		for line := range strings.SplitSeq(c.STS.String(), "\r\n") {
			if line != "" {
				rec.Policy = append(rec.Policy, line)
			}
		}
	}
	if rec.Result == "mx-not-in-policy" {
		// RFC 8460 has no result type for it: the nearest, with ours
		// as the reason code.
		rec.Result, rec.Reason = "validation-failure", "mx-not-in-policy"
	}
	return rec
}

// SendReports sends the DMARC and TLS reports of every day before now's
// UTC day not sent yet, as the daily timer does; for tests, which set
// the day.
func (g *Gateway) SendReports(ctx context.Context, now time.Time) error {
	return g.reports.SendDue(ctx, now)
}
