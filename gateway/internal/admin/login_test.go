package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sluice-mail/sluice/gateway/internal/buildinfo"
	"github.com/sluice-mail/sluice/gateway/internal/login"
	"github.com/sluice-mail/sluice/gateway/internal/metrics"
)

// With a metrics token, /healthz and /metrics answer only with it, on
// loopback too.
func TestMetricsToken(t *testing.T) {
	srv := httptest.NewServer(Handler(Config{
		Metrics:      metrics.NewRegistry(buildinfo.Info{}),
		Chain:        func() Chain { return Chain{} },
		MetricsToken: "s3cret-token",
	}))
	t.Cleanup(srv.Close)
	for _, path := range []string{"/metrics", "/healthz"} {
		for _, c := range []struct {
			auth string
			want int
		}{
			{"", 401},
			{"Bearer wrong", 401},
			{"Bearer s3cret-token-and-more", 401},
			{"Basic s3cret-token", 401},
			{"Bearer s3cret-token", 200},
		} {
			h := map[string]string{}
			if c.auth != "" {
				h["Authorization"] = c.auth
			}
			if got := adminRequest(t, srv, "GET", path, "", h); got != c.want {
				t.Errorf("GET %s with Authorization %q: %d, want %d", path, c.auth, got, c.want)
			}
		}
		// A foreign Host is refused before the token is looked at.
		if got := adminRequest(t, srv, "GET", path, "rebind.attacker.test", map[string]string{"Authorization": "Bearer s3cret-token"}); got != http.StatusMisdirectedRequest {
			t.Errorf("GET %s with a foreign Host: %d, want 421", path, got)
		}
	}
}

// loginHandler is the admin handler with the console behind a login.
func loginHandler(t *testing.T) http.Handler {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	l, err := login.New(login.Config{Users: []login.User{{Name: "admin", PasswordHash: string(hash)}}})
	if err != nil {
		t.Fatal(err)
	}
	return Handler(Config{
		Metrics: metrics.NewRegistry(buildinfo.Info{}),
		Hosts:   []string{"mx.ours.test"},
		Reload:  func(context.Context) ([]string, error) { return nil, nil },
		Chain:   func() Chain { return Chain{} },
		Login:   l,
		Console: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("console")) }),
	})
}

// With a login, the console needs it, and so does /admin/* from off the
// host; /healthz and /metrics do not; the Host check comes first.
func TestConsoleBehindLogin(t *testing.T) {
	h := loginHandler(t)
	for _, c := range []struct {
		method, path, remote, host string
		want                       int
	}{
		{"GET", "/", "192.0.2.7:5000", "mx.ours.test", http.StatusSeeOther},
		{"GET", "/", "127.0.0.1:5000", "localhost", http.StatusSeeOther},
		{"GET", "/api/v1/transactions", "127.0.0.1:5000", "localhost", http.StatusUnauthorized},
		{"GET", "/admin/chain", "192.0.2.7:5000", "mx.ours.test", http.StatusUnauthorized},
		{"POST", "/admin/reload", "192.0.2.7:5000", "mx.ours.test", http.StatusUnauthorized},
		{"GET", "/admin/chain", "127.0.0.1:5000", "localhost", http.StatusOK}, // sluice queue, scripts on the host
		{"GET", "/healthz", "192.0.2.7:5000", "mx.ours.test", http.StatusOK},
		{"GET", "/metrics", "192.0.2.7:5000", "mx.ours.test", http.StatusOK},
		{"GET", "/login", "192.0.2.7:5000", "mx.ours.test", http.StatusOK},
		{"GET", "/login", "127.0.0.1:5000", "rebind.attacker.test", http.StatusMisdirectedRequest},
		{"GET", "/", "127.0.0.1:5000", "rebind.attacker.test", http.StatusMisdirectedRequest},
		{"GET", "/admin/chain", "127.0.0.1:5000", "rebind.attacker.test", http.StatusMisdirectedRequest},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		r.RemoteAddr, r.Host = c.remote, c.host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s %s from %s, Host %s: %d, want %d", c.method, c.path, c.remote, c.host, w.Code, c.want)
		}
	}
}

// No page of the listener may be framed by another site's page (which
// could trick a click on the reload or log-out button), nor its answers
// read as another type than they say.
func TestNotFramed(t *testing.T) {
	h := loginHandler(t)
	for _, path := range []string{"/login", "/", "/healthz"} {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr, r.Host = "127.0.0.1:5000", "localhost"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		hd := w.Result().Header
		if hd.Get("X-Frame-Options") != "DENY" || hd.Get("Content-Security-Policy") != "frame-ancestors 'none'" || hd.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: X-Frame-Options %q, Content-Security-Policy %q, X-Content-Type-Options %q", path,
				hd.Get("X-Frame-Options"), hd.Get("Content-Security-Policy"), hd.Get("X-Content-Type-Options"))
		}
	}
}
