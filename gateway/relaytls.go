package gateway

import (
	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// relayTLS sets what the relay needs for TLS towards destinations: the
// least it asks of every one ([relay] tls_security), the roots it
// verifies certificates with, the fetcher of their MTA-STS policies,
// whether their TLSA records count (DANE), and where results are counted
// and recorded for TLS reports.
func (g *Gateway) relayTLS(cfg *config.Config, res *resolver.Resolver, c *relay.Config) error {
	c.Security, _ = relay.ParseSecurity(cfg.Relay.TLSSecurity) // validated by config
	c.TLSResult = g.tlsResult
	c.DANE = cfg.RelayDANE()
	if cfg.Relay.DANE != nil && *cfg.Relay.DANE && !cfg.DNS.DNSSEC {
		g.log.Warn("relay.dane = true has no effect without [dns] dnssec = true: TLSA records are only believed from a validating resolver")
	}
	roots, err := certs.SystemRootsAnd(cfg.Path(cfg.Relay.TLSCAFile))
	if err != nil {
		return err
	}
	c.RootCAs = roots
	if cfg.RelayMTASTS() {
		c.MTASTS, err = mtasts.NewFetcher(mtasts.Config{
			Resolver:    res,
			RootCAs:     roots,
			DisableIPv6: c.DisableIPv6,
			Cache:       g.stsCache,
			Logger:      g.log,
			Fetched:     g.metrics.stsFetched,
			NotWaited:   g.metrics.stsNotWaited.Inc,
		})
	}
	return err
}
