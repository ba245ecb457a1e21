package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
)

// consoleConfig turns the console on, with user admin and password pw.
func consoleConfig(t *testing.T) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return "[console]\nenabled = true\n[[console.user]]\nname = \"admin\"\npassword_hash = \"" + string(hash) + "\"\n"
}

// The admin listener serves HTTPS with the STARTTLS certificate when it
// is not on loopback, and the session cookie is then Secure; on loopback
// it serves plain HTTP. Without a certificate, off loopback is an error.
func TestAdminTLSOffLoopback(t *testing.T) {
	logs := &syncbuf.Buffer{}
	cfg := parseConfig(t, "data_dir = \""+t.TempDir()+"\"\n"+restartOnlyBase+"[smtp]\ntls_self_signed = true\n"+consoleConfig(t))
	g, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.openActivity(); err != nil { // as Listen does
		t.Fatal(err)
	}
	srv, err := g.adminServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if l, err := g.adminListener(plain, true); err != nil || l != plain {
		t.Fatalf("on loopback: %v, %v; want the listener itself", l, err)
	}
	go srv.Serve(plain)

	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := g.adminListener(raw, false) // as if it were not on loopback
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)

	for _, c := range []struct {
		url    string
		secure bool
	}{
		{"http://" + plain.Addr().String(), false},
		{"https://" + raw.Addr().String(), true},
	} {
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Get(c.url + "/login")
		if err != nil {
			t.Fatalf("GET %s/login: %v", c.url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if c.secure {
			if resp.TLS == nil || resp.TLS.PeerCertificates[0].VerifyHostname("mx.ours.test") != nil {
				t.Errorf("%s: not the STARTTLS certificate for mx.ours.test: %+v", c.url, resp.TLS)
			}
		}
		token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body)
		if token == nil {
			t.Fatalf("%s/login: no csrf field in\n%s", c.url, body)
		}
		resp, err = client.PostForm(c.url+"/login", url.Values{"user": {"admin"}, "password": {"pw"}, "csrf": {string(token[1])}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		set := strings.Join(resp.Header["Set-Cookie"], "\n")
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(set, "sluice_session=") || strings.Contains(set, "Secure") != c.secure {
			t.Errorf("%s: login answered %s with cookies\n%s\nwant 303 and a session cookie, Secure only over TLS", c.url, resp.Status, set)
		}
		// The session holds: the login form sends a logged-in user on.
		resp, err = client.Get(c.url + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%s/login after login: %s, want 303", c.url, resp.Status)
		}
	}

	noTLS := parseConfig(t, "data_dir = \""+t.TempDir()+"\"\n"+restartOnlyBase)
	g2, err := New(context.Background(), noTLS, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if _, err := g2.adminListener(raw, false); err == nil || !strings.Contains(err.Error(), "not on loopback") {
		t.Errorf("off loopback without a certificate: %v, want an error", err)
	}
}
