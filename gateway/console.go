package gateway

import (
	"context"
	"net/http"

	"github.com/sluice-mail/sluice/gateway/internal/console"
	"github.com/sluice-mail/sluice/gateway/internal/login"
)

// consoleHandler is the activity console over the store, for the admin
// listener to serve behind the login (admin.Config.Console): it reads the
// logged-in user and the CSRF token of its forms from the login, and
// reloads as POST /admin/reload does.
func (g *Gateway) consoleHandler(store console.Store) http.Handler {
	var q console.Queue
	if g.queue != nil {
		q = g.queue
	}
	return console.Handler(console.Config{
		Store:     store,
		Chain:     g.chainInfo,
		Reload:    g.reloadOverHTTP,
		Queue:     q,
		CSRFToken: login.CSRFToken,
		User:      login.UserName,
		Logger:    g.log,
	})
}

// reloadOverHTTP is a reload asked for on the admin listener: the JSON
// endpoint or the console's button.
func (g *Gateway) reloadOverHTTP(ctx context.Context) ([]string, error) {
	g.log.Info("reloading: asked over HTTP")
	return g.reloadReporting(ctx)
}
