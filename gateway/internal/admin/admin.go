// Package admin is the operator's HTTP interface to a running gateway:
// health, metrics in the Prometheus text format, reloading the filter
// chain, and a listing of the chain in use. It has no authentication, so
// it belongs on loopback or behind something that authenticates.
//
// Being on loopback is not enough against a browser: a page on another
// site can point a name of its own at 127.0.0.1 (DNS rebinding) and have
// the operator's browser read /metrics or post to /admin/reload. So only
// requests whose Host is one of ours are served, and a browser's
// cross-origin requests may not change anything.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mail/sluice/gateway/internal/login"
	"github.com/sluice-mail/sluice/gateway/internal/metrics"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// Config is what the endpoints serve from.
type Config struct {
	Metrics prometheus.Gatherer
	// Hosts are the names, besides localhost and IP address literals of
	// loopback or of the listener itself, that a request's Host may
	// carry: the gateway's hostname.
	Hosts []string
	// Reload rebuilds the generation from the configuration and swaps it
	// in, and returns the dotted keys of the settings that changed but
	// need a restart; on failure the old generation keeps serving and the
	// error, one "file:line: problem" per line, goes back to the caller.
	Reload func(context.Context) (notApplied []string, err error)
	// Chain describes the chain in use now.
	Chain func() Chain
	// Queue is the gateway's queue, for the /admin/queue endpoints; nil
	// if it has none, and they answer 503.
	Queue Queue
	// MetricsToken, if set, is the bearer token /healthz and /metrics
	// ask for.
	MetricsToken string
	// Login, if set, guards Console, /api/v1/ (part of Console) and
	// /admin/*, and serves /login and /logout.
	Login *login.Login
	// Console serves / when Login is set: the activity console.
	Console http.Handler
	Logger  *slog.Logger
}

// Chain is the filter chain in use, as GET /admin/chain shows it.
type Chain struct {
	// Generation numbers the configuration's generations (chain, keys,
	// certificate, settings) since start: 1 is the first, each successful
	// reload adds one.
	Generation uint64 `json:"generation"`
	// OpenGenerations counts generations not yet closed: the current one
	// and older ones that sessions in flight still use.
	OpenGenerations int      `json:"open_generations"`
	Plugins         []Plugin `json:"plugins"`
}

// Plugin is one loaded plugin.
type Plugin struct {
	Name        string   `json:"name"`
	Path        string   `json:"path"`
	SHA256      string   `json:"sha256"` // of the module file as loaded
	ABIVersion  uint32   `json:"abi_version"`
	Stages      []string `json:"stages"`      // those it is called at
	Permissions []string `json:"permissions"` // what it declared it may do
	// Capabilities are the host functions gateway.toml grants it.
	Capabilities []string `json:"capabilities"`
	Instances    int      `json:"instances"`
	// Services are where it runs: "mx", "submission" or both, one set
	// of instances then serving both.
	Services []string `json:"services"`
}

// reloadAnswer is the body of POST /admin/reload's answer.
type reloadAnswer struct {
	OK     bool     `json:"ok"`
	Errors []string `json:"errors,omitempty"`
	Chain  *Chain   `json:"chain,omitempty"`
	// NotApplied, in every successful answer, lists the settings that
	// changed but keep their running values until a restart: [] if none.
	NotApplied []string `json:"not_applied,omitzero"`
}

// Handler returns the admin endpoints:
//
//	GET  /healthz        200 "ok" while the gateway runs
//	GET  /metrics        every metric, in the Prometheus text format 0.0.4 or OpenMetrics
//	POST /admin/reload   rebuild and swap the generation; 200 with the new chain and the settings not applied, or 422 with the errors
//	GET  /admin/chain    the chain in use, as JSON
//	     /admin/queue...  list and operate on the queue (see queueEndpoints)
//
// and, with a Login, /login, /logout and the console at /, which like
// /admin/* then need a logged-in user.
//
// A request whose Host is not one of ours gets 421; a browser's request
// from another origin that is not GET or HEAD gets 403; no answer may be
// framed (notFramed). With a MetricsToken, /healthz and /metrics need it
// as a bearer token.
func Handler(c Config) http.Handler {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	h := endpoints(c)
	if c.Login != nil {
		h = withLogin(c, h)
	}
	return notFramed(checkHost(c.Hosts, http.NewCrossOriginProtection().Handler(h)))
}

// notFramed forbids every answer to be shown in another site's frame,
// where a page could make the user click the reload or log-out button
// unseen, and to be read as another type than it says.
func notFramed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// withLogin puts the console behind the login, and the admin endpoints
// other than /healthz and /metrics for clients not on loopback. On
// loopback they stay open as without a console, for `sluice queue` and
// scripts on the host: a browser's page cannot reach them there (the
// Host check and the cross-origin check above).
func withLogin(c Config, admin http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/healthz", admin)
	mux.Handle("/metrics", admin)
	mux.Handle("/login", c.Login.Handler())
	mux.Handle("/logout", c.Login.Handler())
	guarded := c.Login.Require(admin)
	mux.Handle("/admin/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fromLoopback(r) {
			admin.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	}))
	console := c.Console
	if console == nil {
		console = http.NotFoundHandler()
	}
	mux.Handle("/", c.Login.Require(console))
	return mux
}

func endpoints(c Config) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", bearer(c.MetricsToken, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})))
	mux.Handle("GET /metrics", bearer(c.MetricsToken, metrics.Handler(c.Metrics, c.Logger)))
	mux.HandleFunc("POST /admin/reload", func(w http.ResponseWriter, r *http.Request) {
		// A reload once asked for runs to its end even if the caller
		// hangs up: stopping halfway would only waste the work.
		notApplied, err := c.Reload(context.WithoutCancel(r.Context()))
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, reloadAnswer{Errors: strings.Split(err.Error(), "\n")})
			return
		}
		chain := c.Chain()
		if notApplied == nil {
			notApplied = []string{}
		}
		writeJSON(w, http.StatusOK, reloadAnswer{OK: true, Chain: &chain, NotApplied: notApplied})
	})
	mux.HandleFunc("GET /admin/chain", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, c.Chain())
	})
	queueEndpoints(mux, c.Queue)
	return mux
}

// bearer serves next only to requests with "Authorization: Bearer
// token", compared in constant time; every request if token is "".
func bearer(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			http.Error(w, "unauthorized: this endpoint needs Authorization: Bearer <[admin] metrics_token>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkHost serves only requests whose Host names this listener: one of
// hosts, localhost, or an IP address literal that is loopback or the
// address the request came in on. Any other name may be one that a
// stranger pointed at us. The port is not checked: a name is what a
// stranger controls. An HTTP/1.0 request may have no Host at all (net/http
// refuses HTTP/1.1 without one): it is served, since browsers always send
// Host, so it cannot come from a stranger's page.
func checkHost(hosts []string, next http.Handler) http.Handler {
	allowed := map[string]bool{"localhost": true}
	for _, h := range hosts {
		allowed[normalHost(h)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "" {
			next.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = normalHost(host)
		ok := allowed[host]
		if ip, err := netip.ParseAddr(host); err == nil {
			ok = ip.IsLoopback() || ip.Unmap() == localIP(r)
		}
		if !ok {
			http.Error(w, "misdirected request: this admin listener does not serve the host "+r.Host, http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// fromLoopback reports whether the request came from a loopback address.
func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// normalHost is a host name or address as compared: lower case, without
// brackets or a final dot.
func normalHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
}

// localIP is the address a request came in on.
func localIP(r *http.Request) netip.Addr {
	a, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// StageNames lists the stages of a set in session order.
func StageNames(set abi.StageSet) []string {
	names := []string{}
	for _, st := range abi.Stages() {
		if set.Has(st) {
			names = append(names, st.String())
		}
	}
	return names
}

// CapabilityNames lists the capabilities of a set.
func CapabilityNames(c abi.Capability) []string {
	names := []string{}
	for _, name := range abi.CapabilityNames() {
		if one, _ := abi.ParseCapability(name); c.Has(one) {
			names = append(names, name)
		}
	}
	return names
}

// permissionNames are the names of the permission bits, in the words of
// sdk/ABI.md.
var permissionNames = []struct {
	p    abi.Permissions
	name string
}{
	{abi.MayAccept, "accept"},
	{abi.MayReject, "reject"},
	{abi.MayTempfail, "tempfail"},
	{abi.MayDiscard, "discard"},
	{abi.MayQuarantine, "quarantine"},
	{abi.MayAddHeaders, "add_headers"},
	{abi.MayRemoveHeaders, "remove_headers"},
	{abi.MaySetDestination, "set_destination"},
}

// PermissionNames lists the permissions of a set.
func PermissionNames(p abi.Permissions) []string {
	names := []string{}
	for _, n := range permissionNames {
		if p&n.p != 0 {
			names = append(names, n.name)
		}
	}
	return names
}
