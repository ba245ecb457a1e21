package plugin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// httpServer is a loopback HTTP server for the http capability's tests:
// / answers pong, /echo the X-Echo field and the body, /large 100 bytes,
// /slow after 2 seconds, /moved a redirect elsewhere. It counts the
// requests that reached it.
func httpServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/echo":
			body := make([]byte, 64)
			n, _ := r.Body.Read(body)
			w.Write([]byte(r.Method + " " + r.Header.Get("X-Echo") + " " + string(body[:n])))
		case "/large":
			w.Write([]byte(strings.Repeat("x", 100)))
		case "/slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		case "/moved":
			w.Header().Set("Location", "http://192.0.2.1/")
			w.WriteHeader(http.StatusFound)
		default:
			w.Write([]byte("pong"))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func httpSpec(t testing.TB, srv *httptest.Server) Spec {
	return Spec{
		Name:            "web",
		Path:            wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/httpcalls"),
		Instances:       1,
		Capabilities:    abi.CapHTTP,
		HTTPHosts:       []string{strings.TrimPrefix(srv.URL, "http://")},
		HTTPMaxResponse: 50,
		HTTPTimeout:     200 * time.Millisecond,
	}
}

func TestHTTPRequest(t *testing.T) {
	srv, hits := httpServer(t)
	h, logs := newHost(t)
	c := NewChain(load(t, h, httpSpec(t, srv)))
	// A server on another port of the same address, which answers.
	otherSrv, otherHits := httpServer(t)
	other := otherSrv.URL
	expect(t, c, abi.StageConnect, nil, [][2]string{
		{"get " + srv.URL + "/", "200 pong"},
		{"post " + srv.URL + "/echo hello", "200 POST hello hello"},
		{"get " + srv.URL + "/moved", "302 "}, // redirects are not followed
	})
	before := hits.Load()
	notAllowed := "err=sdk: http_request: host not allowed: add its host:port to the plugin's http_hosts in gateway.toml"
	expect(t, c, abi.StageData, NewMessage([]byte(testMessage)), [][2]string{
		{"get " + other + "/", notAllowed},
		// The name is not the address it has: only what is listed.
		{"get http://localhost:" + srv.URL[len("http://127.0.0.1:"):] + "/", notAllowed},
		{"get ftp://" + srv.URL[len("http://"):] + "/", notAllowed},
	})
	if hits.Load() != before || otherHits.Load() != 0 {
		t.Errorf("a request that was not allowed reached a server")
	}
	if !strings.Contains(logs.String(), "not in the plugin's http_hosts") {
		t.Errorf("the refusal is not logged:\n%s", logs)
	}
	expect(t, c, abi.StageConnect, nil, [][2]string{
		// Allowed, but the server speaks no TLS: a failure, not a timeout.
		{"get https://" + srv.URL[len("http://"):] + "/", "err=sdk: http_request: temporary failure"},
		{"get " + srv.URL + "/large", "err=sdk: http_request: response larger than the plugin's http_max_response"},
		{"get " + srv.URL + "/slow", "err=sdk: http_request: no response in time"},
	})
}

// A response that did not fit is asked for again, and answered from the
// one kept; each call sends at most four requests.
func TestHTTPBudget(t *testing.T) {
	srv, hits := httpServer(t)
	h, _ := newHost(t)
	c := NewChain(load(t, h, httpSpec(t, srv)))
	before := hits.Load()
	// The response: status 200, no fields, "pong" — and Go's server sets
	// Content-Length, Content-Type and Date.
	got := results(t, c, abi.StageConnect, nil, "raw "+srv.URL+"/ 4", "raw "+srv.URL+"/ 4096")
	if got[0] == "n=-4" || got[0] != got[1] {
		t.Errorf("too small then large enough: %q, want the same length twice", got)
	}
	if n := hits.Load() - before; n != 1 {
		t.Errorf("%d requests reached the server, want 1", n)
	}
	get := "get " + srv.URL + "/?"
	expect(t, c, abi.StageConnect, nil, [][2]string{
		{get + "1", "200 pong"}, {get + "1", "200 pong"}, // the same again is free
		{get + "2", "200 pong"}, {get + "3", "200 pong"}, {get + "4", "200 pong"},
		{get + "5", "err=sdk: http_request: the call's DNS lookups, HTTP requests or time are used up"},
	})
}

// A request ends at the call's deadline, three quarters of its timeout,
// however long http_timeout is, so that the plugin still answers.
func TestHTTPCallDeadline(t *testing.T) {
	srv, _ := httpServer(t)
	h, _ := newHost(t)
	s := httpSpec(t, srv)
	s.HTTPTimeout, s.Timeout = time.Minute, time.Second
	c := NewChain(load(t, h, s))
	expect(t, c, abi.StageConnect, nil, [][2]string{{"get " + srv.URL + "/slow", "err=sdk: http_request: no response in time"}})
}

// A plugin checks its URL setting when it is configured: a URL outside
// http_hosts refuses the load at that setting; nothing is sent.
func TestHTTPCheckWhileConfiguring(t *testing.T) {
	srv, hits := httpServer(t)
	h, _ := newHost(t)
	s := httpSpec(t, srv)
	s.Config = []byte(`check = "` + srv.URL + `/"`)
	load(t, h, s)
	s.Config = []byte(`check = "http://127.0.0.1:1/"`)
	_, err := h.Load(context.Background(), s)
	var ke *KeyError
	if err == nil || !strings.Contains(err.Error(), "host not allowed") || !errors.As(err, &ke) || ke.Key != "config.check" {
		t.Errorf("Load with a URL outside http_hosts = %v, want a refusal at config.check", err)
	}
	if hits.Load() != 0 {
		t.Errorf("configuring sent %d requests", hits.Load())
	}
	for _, bad := range []string{"127.0.0.1", "http://127.0.0.1:80", "127.0.0.1:0", "[::1:80"} {
		s.Config, s.HTTPHosts = nil, []string{bad}
		if _, err := h.Load(context.Background(), s); err == nil || !strings.Contains(err.Error(), "http_hosts") {
			t.Errorf("http_hosts = [%q]: Load = %v", bad, err)
		}
	}
}
