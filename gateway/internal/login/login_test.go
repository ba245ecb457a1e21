package login

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
)

// Both kinds of hash verify the password they were made from, and only
// that one.
func TestHashesVerify(t *testing.T) {
	for name, hash := range map[string]func(string) (string, error){"argon2id": HashArgon2id, "bcrypt": HashBcrypt} {
		h, err := hash("correct horse")
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckHash(h); err != nil {
			t.Errorf("%s: CheckHash(%q): %v", name, h, err)
		}
		if !Verify(h, "correct horse") {
			t.Errorf("%s: %q does not verify its password", name, h)
		}
		if Verify(h, "correct horse!") || Verify(h, "") {
			t.Errorf("%s: %q verifies a wrong password", name, h)
		}
	}
	if h, _ := HashArgon2id("x"); !regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=3,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Errorf("argon2id hash %q is not in the PHC format", h)
	}
	for _, bad := range []string{"", "plain", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$", "$argon2id$v=16$m=65536,t=3,p=4$c2FsdHNhbHQ$" + strings.Repeat("A", 43), "$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHQ$" + strings.Repeat("A", 43)} {
		if CheckHash(bad) == nil || Verify(bad, "") {
			t.Errorf("CheckHash(%q) accepted it", bad)
		}
	}
}

// A test server: the login, and behind it a page that echoes the user
// and a POST endpoint.
type testSite struct {
	*httptest.Server
	login *Login
	clock *fakeclock.Clock
	log   *syncbuf.Buffer
}

func newSite(t *testing.T, tls bool) *testSite {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("sluice-demo"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	argon, err := HashArgon2id("other-pass")
	if err != nil {
		t.Fatal(err)
	}
	s := &testSite{clock: fakeclock.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)), log: &syncbuf.Buffer{}}
	s.login, err = New(Config{
		Users:  []User{{Name: "admin", PasswordHash: string(hash)}, {Name: "ops", PasswordHash: argon}},
		Logger: slog.New(slog.NewTextHandler(s.log, nil)),
		Now:    s.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/login", s.login.Handler())
	mux.Handle("/logout", s.login.Handler())
	mux.Handle("/", s.login.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+UserName(r)+" "+CSRFToken(r))
	})))
	if tls {
		s.Server = httptest.NewTLSServer(mux)
	} else {
		s.Server = httptest.NewServer(mux)
	}
	t.Cleanup(s.Close)
	return s
}

// browser is a client with a cookie jar that does not follow redirects.
func (s *testSite) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := s.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// logIn gets the form and posts it; it returns the answer to the post.
func logIn(t *testing.T, c *http.Client, base, user, password string) *http.Response {
	t.Helper()
	resp, err := c.Get(base + "/login?next=/page")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfInput.FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("GET /login: %s, no csrf field in\n%s", resp.Status, body)
	}
	resp, err = c.PostForm(base+"/login", url.Values{"user": {user}, "password": {password}, "csrf": {string(m[1])}, "next": {"/page"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestLoginAndCookie(t *testing.T) {
	for _, tls := range []bool{false, true} {
		s := newSite(t, tls)
		c := s.browser(t)
		if resp := logIn(t, c, s.URL, "admin", "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("wrong password: %s, want 401", resp.Status)
		}
		if !strings.Contains(s.log.String(), `msg="console login failed" ip=127.0.0.1 user=admin`) {
			t.Errorf("no fail2ban line for the failure in the log:\n%s", s.log)
		}
		resp := logIn(t, c, s.URL, "admin", "sluice-demo")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/page" {
			t.Fatalf("right password: %s to %q, want 303 to /page", resp.Status, resp.Header.Get("Location"))
		}
		var session *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == sessionCookie {
				session = ck
			}
		}
		if session == nil {
			t.Fatalf("no session cookie in %v", resp.Header["Set-Cookie"])
		}
		if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/" || session.MaxAge != 12*3600 || session.Secure != tls || len(session.Value) != 43 {
			t.Errorf("TLS %v: session cookie %q: want HttpOnly, SameSite=Strict, Path=/, Max-Age 12h, Secure only with TLS, 32 random bytes", tls, resp.Header["Set-Cookie"])
		}
		if resp, body := get(t, c, s.URL+"/page"); resp.StatusCode != 200 || !strings.HasPrefix(body, "GET admin ") {
			t.Errorf("logged in, GET /page: %s %q", resp.Status, body)
		}
		// The session ends after 12 hours.
		s.clock.Advance(12 * time.Hour)
		if resp, _ := get(t, c, s.URL+"/page"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("12h later, GET /page: %s, want 303 to /login", resp.Status)
		}
	}
	// argon2id users log in too.
	s := newSite(t, false)
	if resp := logIn(t, s.browser(t), s.URL, "ops", "other-pass"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("argon2id user: %s, want 303", resp.Status)
	}
}

// A browser that loads the login page again (a second tab, or its
// /favicon.ico sent to the login too) can still post the first form.
func TestLoginFormLoadedTwice(t *testing.T) {
	s := newSite(t, false)
	c := s.browser(t)
	_, first := get(t, c, s.URL+"/login?next=/page")
	m := csrfInput.FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("no csrf field in\n%s", first)
	}
	get(t, c, s.URL+"/login?next=%2Ffavicon.ico")
	resp, err := c.PostForm(s.URL+"/login", url.Values{"user": {"admin"}, "password": {"sluice-demo"}, "csrf": {m[1]}, "next": {"/page"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("posting the first form after a second load: %s, want 303", resp.Status)
	}
}

// Without a session a browser is sent to the login form, an API client
// gets 401 in JSON.
func TestRequireWithoutSession(t *testing.T) {
	s := newSite(t, false)
	c := s.browser(t)
	resp, _ := get(t, c, s.URL+"/tx?q=1")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Ftx%3Fq%3D1" {
		t.Errorf("browser: %s to %q, want 303 to /login?next=...", resp.Status, resp.Header.Get("Location"))
	}
	for _, path := range []string{"/api/v1/transactions", "/admin/chain"} {
		resp, body := get(t, c, s.URL+path)
		var e struct{ Error string }
		if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("GET %s: %s %q, want 401 with a JSON error", path, resp.Status, body)
		}
	}
	req, _ := http.NewRequest("GET", s.URL+"/x", nil)
	req.Header.Set("Accept", "application/json")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("Accept: application/json: %v %v, want 401", resp.Status, err)
	}
	// A login may only send the browser to a path of ours. A browser
	// drops tabs and newlines from a URL (WHATWG URL parsing) and reads a
	// backslash as a slash, so "/\t/evil.test/" is "//evil.test/" to it.
	for _, n := range []string{"//evil.test/", "/\\evil.test/", "https://evil.test/", "/\t/evil.test/", "/\n/evil.test/", "/\r/evil.test/"} {
		resp = logInNext(t, s.browser(t), s.URL, n)
		if resp.Header.Get("Location") != "/" {
			t.Errorf("next=%q: sent to %q, want /", n, resp.Header.Get("Location"))
		}
	}
	if resp = logInNext(t, s.browser(t), s.URL, "/tx/a-1?q=x"); resp.Header.Get("Location") != "/tx/a-1?q=x" {
		t.Errorf("next=/tx/a-1?q=x: sent to %q, want it kept", resp.Header.Get("Location"))
	}
}

func logInNext(t *testing.T, c *http.Client, base, next string) *http.Response {
	t.Helper()
	_, body := get(t, c, base+"/login")
	m := csrfInput.FindStringSubmatch(body)
	resp, err := c.PostForm(base+"/login", url.Values{"user": {"admin"}, "password": {"sluice-demo"}, "csrf": {m[1]}, "next": {next}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// Every POST needs the session's CSRF token, the login form its own.
func TestCSRF(t *testing.T) {
	s := newSite(t, false)
	c := s.browser(t)
	// The login form without its token, or with another one.
	for _, token := range []string{"", "forged"} {
		get(t, c, s.URL+"/login")
		resp, err := c.PostForm(s.URL+"/login", url.Values{"user": {"admin"}, "password": {"sluice-demo"}, "csrf": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("login with csrf %q: %s, want 403", token, resp.Status)
		}
	}
	logIn(t, c, s.URL, "admin", "sluice-demo")
	_, body := get(t, c, s.URL+"/page")
	token := strings.Fields(body)[2]
	post := func(form url.Values, header string) int {
		req, _ := http.NewRequest("POST", s.URL+"/page", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if header != "" {
			req.Header.Set("X-CSRF-Token", header)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		form   url.Values
		header string
		want   int
	}{
		{url.Values{}, "", 403},
		{url.Values{"csrf": {"wrong"}}, "", 403},
		{url.Values{}, "wrong", 403},
		{url.Values{"csrf": {token}}, "", 200},
		{url.Values{}, token, 200},
	} {
		if got := post(tc.form, tc.header); got != tc.want {
			t.Errorf("POST with form %v, header %q: %d, want %d", tc.form, tc.header, got, tc.want)
		}
	}
	// Logging out needs the token too, and ends the session.
	if got := postPath(t, c, s.URL+"/logout", url.Values{}); got != 403 {
		t.Errorf("logout without token: %d, want 403", got)
	}
	if got := postPath(t, c, s.URL+"/logout", url.Values{"csrf": {token}}); got != 303 {
		t.Errorf("logout: %d, want 303", got)
	}
	if resp, _ := get(t, c, s.URL+"/page"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after logout: %s, want 303 to /login", resp.Status)
	}
}

func postPath(t *testing.T, c *http.Client, u string, form url.Values) int {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Five failures within 15 minutes for one user, or from one address, make
// the next tries wait, even with the right password.
func TestThrottling(t *testing.T) {
	s := newSite(t, false)
	try := func(ip, user, password string) *httptest.ResponseRecorder {
		t.Helper()
		h := s.login.Handler()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/login", nil))
		m := csrfInput.FindStringSubmatch(w.Body.String())
		form := url.Values{"user": {user}, "password": {password}, "csrf": {m[1]}}
		r := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = ip + ":4000"
		r.AddCookie(w.Result().Cookies()[0])
		w = httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	// Per user: five addresses fail for admin.
	for i := range 5 {
		if w := try("192.0.2."+string(rune('1'+i)), "admin", "guess"); w.Code != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, w.Code)
		}
	}
	w := try("198.51.100.9", "admin", "sluice-demo")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "900" {
		t.Errorf("sixth try for admin, right password: %d, Retry-After %q; want 429 and 900", w.Code, w.Header().Get("Retry-After"))
	}
	if w := try("198.51.100.9", "ops", "other-pass"); w.Code != http.StatusSeeOther {
		t.Errorf("another user from another address: %d, want 303", w.Code)
	}
	s.clock.Advance(15 * time.Minute)
	if w := try("198.51.100.9", "admin", "sluice-demo"); w.Code != http.StatusSeeOther {
		t.Errorf("15 minutes later: %d, want 303", w.Code)
	}
	// Per address: one address fails for five names.
	for i := range 5 {
		if w := try("203.0.113.7", "nobody"+string(rune('a'+i)), "guess"); w.Code != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, w.Code)
		}
	}
	s.clock.Advance(time.Minute)
	if w := try("203.0.113.7", "ops", "other-pass"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "840" {
		t.Errorf("sixth try from 203.0.113.7: %d, Retry-After %q; want 429 and 840", w.Code, w.Header().Get("Retry-After"))
	}
	if !strings.Contains(s.log.String(), `msg="console login throttled" ip=203.0.113.7 user=ops`) {
		t.Errorf("no line for the throttled try:\n%s", s.log)
	}
}
