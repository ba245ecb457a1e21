package gateway

import (
	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/config"
)

// checkActivity finds, at build, a [console] database URL that
// activity.Open would refuse, so that sluice check reports what would
// stop the gateway at start. It opens nothing.
func checkActivity(cfg *config.Config) *config.Error {
	if !cfg.Console.Enabled {
		return nil
	}
	if err := activity.CheckDatabase(cfg.ConsoleDatabase()); err != nil {
		return cfg.ErrorAt("console.database", "console.database: %v", err)
	}
	return nil
}

// openActivity opens the console's store when [console] is on and gives
// it to the SMTP server. Listen calls it, not build: sluice check must
// not open the database of a gateway that may be running.
func (g *Gateway) openActivity() error {
	if !g.cfg.Console.Enabled {
		return nil
	}
	s, err := activity.Open(g.cfg.ConsoleDatabase(), activity.Options{
		Retention: g.cfg.Console.Retention.D(),
		Logger:    g.log,
		Metrics:   g.metrics.activity,
	})
	if err != nil {
		return err
	}
	g.activity = s
	g.smtp.UseActivity(s)
	if g.submission != nil {
		g.submission.UseActivity(s)
	}
	return nil
}

// Activity is the console's store: nil before Listen opened it, or when
// [console] is off.
func (g *Gateway) Activity() *activity.Store { return g.activity }
