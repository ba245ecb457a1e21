package gateway

import (
	"github.com/sluice-mail/sluice/gateway/internal/activity"
)

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
	return nil
}

// Activity is the console's store: nil before Listen opened it, or when
// [console] is off.
func (g *Gateway) Activity() *activity.Store { return g.activity }
