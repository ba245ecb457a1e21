package gateway_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// A gateway with the console on: the console needs a login, /metrics and
// /healthz the metrics token, and a foreign Host is refused everywhere.
func TestConsoleAccess(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("sluice-demo"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, envOptions{
		admin:    `metrics_token = "scrape-me"`,
		sections: "[console]\nenabled = true\n[[console.user]]\nname = \"admin\"\npassword_hash = \"" + string(hash) + "\"\n",
	})
	base := "http://" + e.gw.AdminAddr()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, host, auth string, form url.Values) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if host != "" {
			req.Host = host
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, path := range []string{"/metrics", "/healthz"} {
		if resp, _ := do("GET", path, "", "", nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %s, want 401", path, resp.Status)
		}
		if resp, _ := do("GET", path, "", "Bearer scrape-me", nil); resp.StatusCode != 200 {
			t.Errorf("GET %s with the token: %s, want 200", path, resp.Status)
		}
	}
	if resp, _ := do("GET", "/", "", "", nil); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("GET / before login: %s to %q, want 303 to /login", resp.Status, resp.Header.Get("Location"))
	}
	for _, path := range []string{"/login", "/", "/api/v1/transactions", "/metrics"} {
		if resp, _ := do("GET", path, "rebind.attacker.test", "Bearer scrape-me", nil); resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET %s with a foreign Host: %s, want 421", path, resp.Status)
		}
	}
	_, body := do("GET", "/login", "", "", nil)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field in the login form:\n%s", body)
	}
	resp, _ := do("POST", "/login", "", "", url.Values{"user": {"admin"}, "password": {"sluice-demo"}, "csrf": {m[1]}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %s, want 303", resp.Status)
	}
	if resp, body := do("GET", "/", "", "", nil); resp.StatusCode != 200 || !strings.Contains(body, "admin") {
		t.Errorf("GET / after login: %s\n%s", resp.Status, body)
	}
	if resp, _ := do("POST", "/logout", "", "", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /logout without the CSRF token: %s, want 403", resp.Status)
	}
}
