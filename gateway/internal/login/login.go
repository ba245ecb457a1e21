// Package login guards the console on the admin listener: users from the
// configuration with password hashes, a session cookie, a CSRF token per
// session on every POST, and login throttling.
//
// Sessions live in memory: a restart logs everyone out, which for a
// handful of operators is cheaper than storing secrets on disk.
package login

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// User is one login: a name and a bcrypt or argon2id hash.
type User struct {
	Name         string
	PasswordHash string
}

// Config is what New builds the guard from.
type Config struct {
	Users []User
	// SessionTTL is how long a session lasts after login; 0 means 12h.
	SessionTTL time.Duration
	// MaxFailures failed logins within Window, from one client IP or for
	// one user name, make further tries wait; 0 means 5 in 15 minutes.
	MaxFailures int
	Window      time.Duration
	Logger      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

const (
	sessionCookie = "sluice_session"
	// loginCookie carries the login form's CSRF token before there is a
	// session (a double-submit cookie): a stranger's page can post the
	// form but cannot read or set the cookie.
	loginCookie = "sluice_login"
	csrfField   = "csrf"
	csrfHeader  = "X-CSRF-Token"
)

// Login serves /login and /logout and guards other handlers with Require.
type Login struct {
	users    map[string]string // name: hash
	dummy    string            // hashed for unknown names, so they take as long
	ttl      time.Duration
	throttle *throttle
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	sessions map[string]*session // by id
}

type session struct {
	user    string
	csrf    string
	expires time.Time
}

type ctxKey struct{}

// New checks the users' hashes and returns the guard.
func New(c Config) (*Login, error) {
	l := &Login{users: map[string]string{}, ttl: c.SessionTTL, log: c.Logger, now: c.Now, sessions: map[string]*session{}}
	if l.ttl == 0 {
		l.ttl = 12 * time.Hour
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 5
	}
	if c.Window == 0 {
		c.Window = 15 * time.Minute
	}
	l.throttle = newThrottle(c.MaxFailures, c.Window)
	for _, u := range c.Users {
		if err := CheckHash(u.PasswordHash); err != nil {
			return nil, fmt.Errorf("console user %q: %v", u.Name, err)
		}
		l.users[u.Name] = u.PasswordHash
		if strings.HasPrefix(u.PasswordHash, "$argon2id$") || l.dummy == "" {
			l.dummy = u.PasswordHash
		}
	}
	return l, nil
}

// Handler serves GET and POST /login and POST /logout.
func (l *Login) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", l.form)
	mux.HandleFunc("POST /login", l.login)
	mux.Handle("POST /logout", l.Require(http.HandlerFunc(l.logout)))
	return mux
}

// Require serves next only to a logged-in user, and a request other than
// GET or HEAD only with the session's CSRF token (form field csrf or
// header X-CSRF-Token). Without a session, a browser is sent to /login
// and an API client (/api/, /admin/, or Accept: application/json) gets a
// 401 in JSON.
func (l *Login) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := l.session(r)
		if s == nil {
			if isAPI(r) {
				writeJSONError(w, http.StatusUnauthorized, "login required: POST /login with a user and password")
				return
			}
			http.Redirect(w, r, "/login?next="+template.URLQueryEscaper(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameToken(requestToken(r), s.csrf) {
			if isAPI(r) {
				writeJSONError(w, http.StatusForbidden, "missing or wrong CSRF token (form field csrf or header X-CSRF-Token)")
			} else {
				http.Error(w, "forbidden: missing or wrong CSRF token; reload the page and try again", http.StatusForbidden)
			}
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
	})
}

// CSRFToken is the token a form served by a handler under Require must
// send back in its csrf field; "" outside Require.
func CSRFToken(r *http.Request) string {
	if s, ok := r.Context().Value(ctxKey{}).(*session); ok {
		return s.csrf
	}
	return ""
}

// UserName is the logged-in user's name; "" outside Require.
func UserName(r *http.Request) string {
	if s, ok := r.Context().Value(ctxKey{}).(*session); ok {
		return s.user
	}
	return ""
}

func isAPI(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/admin/") ||
		strings.Contains(r.Header.Get("Accept"), "application/json")
}

func requestToken(r *http.Request) string {
	if t := r.Header.Get(csrfHeader); t != "" {
		return t
	}
	return r.PostFormValue(csrfField)
}

// sameToken compares tokens in constant time; "" never matches.
func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// session is the live session the request's cookie names, or nil.
func (l *Login) session(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sessions[c.Value]
	if s == nil {
		return nil
	}
	if !l.now().Before(s.expires) {
		delete(l.sessions, c.Value)
		return nil
	}
	return s
}

// newSession starts a session for user and returns its id.
func (l *Login) newSession(user string) string {
	id, csrf := randomToken(), randomToken()
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, s := range l.sessions { // expired ones go, so the map stays small
		if !now.Before(s.expires) {
			delete(l.sessions, k)
		}
	}
	l.sessions[id] = &session{user: user, csrf: csrf, expires: now.Add(l.ttl)}
	return id
}

// randomToken is 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// cookie is one of ours: HttpOnly, SameSite=Strict, Path=/, and Secure
// when the request came over TLS.
func cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

// next is where to go after logging in: a path of ours, or /. A browser
// drops tabs and newlines from a URL and reads a backslash as a slash, so
// "/\t/evil.test" would take it to evil.test: any control character or
// backslash makes it /.
func next(r *http.Request) string {
	n := r.FormValue("next")
	if !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.ContainsFunc(n, func(c rune) bool { return c < ' ' || c == 0x7f || c == '\\' }) {
		return "/"
	}
	return n
}

var page = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · Sluice</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 22rem; margin: 4rem auto; padding: 0 1rem; }
label, input, button { display: block; width: 100%; box-sizing: border-box; font-size: 1rem; }
input { margin: .25rem 0 1rem; padding: .5rem; }
button { padding: .6rem; }
.error { color: #a00; border: 1px solid #a00; padding: .5rem; }
</style>
</head>
<body>
<main>
<h1>Sluice console</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="next" value="{{.Next}}">
<label for="user">User</label>
<input id="user" name="user" autocomplete="username" required autofocus value="{{.User}}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
</main>
</body>
</html>
`))

type pageData struct {
	Error, CSRF, Next, User string
}

// form shows the login form, with a fresh login CSRF token in a cookie
// and in the form.
func (l *Login) form(w http.ResponseWriter, r *http.Request) {
	if l.session(r) != nil {
		http.Redirect(w, r, next(r), http.StatusSeeOther)
		return
	}
	l.render(w, r, http.StatusOK, pageData{Next: next(r)})
}

func (l *Login) render(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	// A browser that already holds a login token keeps it: it loads the
	// form more than once (a second tab, its /favicon.ico sent here too),
	// and a new token would make the form on screen expire.
	d.CSRF = randomToken()
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == len(d.CSRF) {
		d.CSRF = c.Value
	}
	http.SetCookie(w, cookie(r, loginCookie, d.CSRF, 3600))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	page.Execute(w, d)
}

// login checks the form: its CSRF token, the throttle, then the password.
func (l *Login) login(w http.ResponseWriter, r *http.Request) {
	user, password := r.PostFormValue("user"), r.PostFormValue("password")
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(r.PostFormValue(csrfField), c.Value) {
		l.render(w, r, http.StatusForbidden, pageData{Error: "The form expired; please log in again.", Next: next(r), User: user})
		return
	}
	ip := clientIP(r)
	now := l.now()
	if wait := l.throttle.wait(now, "ip "+ip, "user "+user); wait > 0 {
		l.log.Warn("console login throttled", "ip", ip, "user", user)
		w.Header().Set("Retry-After", fmt.Sprint(int((wait+time.Second-1)/time.Second)))
		l.render(w, r, http.StatusTooManyRequests, pageData{Error: "Too many failed logins; try again later.", Next: next(r), User: user})
		return
	}
	hash, known := l.users[user]
	if !known {
		hash = l.dummy
	}
	if !Verify(hash, password) || !known {
		l.throttle.fail(now, "ip "+ip, "user "+user)
		// One line with the client's address, for fail2ban.
		l.log.Warn("console login failed", "ip", ip, "user", user)
		l.render(w, r, http.StatusUnauthorized, pageData{Error: "Wrong user name or password.", Next: next(r), User: user})
		return
	}
	l.log.Info("console login", "ip", ip, "user", user)
	http.SetCookie(w, cookie(r, loginCookie, "", -1))
	http.SetCookie(w, cookie(r, sessionCookie, l.newSession(user), int(l.ttl/time.Second)))
	http.Redirect(w, r, next(r), http.StatusSeeOther)
}

func (l *Login) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		l.mu.Lock()
		delete(l.sessions, c.Value)
		l.mu.Unlock()
	}
	http.SetCookie(w, cookie(r, sessionCookie, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// clientIP is the address the request came from. Headers such as
// X-Forwarded-For are not believed: anyone can send them.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
