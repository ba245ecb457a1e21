package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-mail/sluice/gateway/internal/buildinfo"
	"github.com/sluice-mail/sluice/gateway/internal/metrics"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// A handler whose reload fails with two file:line errors the first time
// and works the second.
func testServer(t *testing.T) *httptest.Server {
	t.Helper()
	reg := metrics.NewRegistry(buildinfo.Info{Version: "v0", Revision: "r", GoVersion: "go"})
	promauto.With(reg).NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "A test counter."}).Add(3)
	generation := uint64(1)
	calls := 0
	srv := httptest.NewServer(Handler(Config{
		Metrics: reg,
		Hosts:   []string{"mx.ours.test"},
		Reload: func(context.Context) ([]string, error) {
			calls++
			switch calls {
			case 1:
				return nil, errors.New("gateway.toml:12: plugin router: config refused: bad rule\ngateway.toml:20: plugin dmarc: no such file")
			case 2:
				generation++
				return []string{"smtp.listen", "smtp.max_recipients"}, nil
			}
			generation++
			return nil, nil
		},
		Chain: func() Chain {
			return Chain{Generation: generation, OpenGenerations: 1, Plugins: []Plugin{{Name: "router", SHA256: "ab12"}}}
		},
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A failed reload answers 422 with its errors; a good one 200 with the
// new chain and, always, the settings it did not apply ([] if none).
func TestReloadAnswers(t *testing.T) {
	srv := testServer(t)
	type answer struct {
		OK         bool      `json:"ok"`
		Errors     []string  `json:"errors"`
		Chain      *Chain    `json:"chain"`
		NotApplied *[]string `json:"not_applied"`
	}
	post := func() (int, answer) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/admin/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a answer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, a
	}
	code, a := post()
	want := []string{"gateway.toml:12: plugin router: config refused: bad rule", "gateway.toml:20: plugin dmarc: no such file"}
	if code != http.StatusUnprocessableEntity || a.OK || !slices.Equal(a.Errors, want) || a.Chain != nil || a.NotApplied != nil {
		t.Errorf("failed reload: %d %+v; want 422 with one error per line", code, a)
	}

	code, a = post()
	if code != http.StatusOK || !a.OK || len(a.Errors) != 0 || a.Chain == nil || a.Chain.Generation != 2 ||
		a.NotApplied == nil || !slices.Equal(*a.NotApplied, []string{"smtp.listen", "smtp.max_recipients"}) {
		t.Errorf("good reload: %d %+v; want 200 with the new chain and the settings not applied", code, a)
	}

	code, a = post()
	if code != http.StatusOK || a.NotApplied == nil || len(*a.NotApplied) != 0 {
		t.Errorf("good reload, every setting applied: %d %+v; want 200 with not_applied []", code, a)
	}
}

func TestEndpoints(t *testing.T) {
	srv := testServer(t)
	get := func(path string) (*http.Response, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get("/healthz"); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", resp.StatusCode, body)
	}
	resp, body := get("/metrics")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") || !strings.Contains(body, "\nsluice_test_total 3\n") {
		t.Errorf("/metrics: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = get("/admin/chain")
	var c Chain
	if err := json.Unmarshal([]byte(body), &c); err != nil || resp.StatusCode != 200 || c.Plugins[0].SHA256 != "ab12" {
		t.Errorf("/admin/chain: %d %v %s", resp.StatusCode, err, body)
	}
	// Reloading changes state, so it is POST only.
	if resp, _ := get("/admin/reload"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /admin/reload: %d, want 405", resp.StatusCode)
	}
	if resp, _ := get("/nothing"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing: %d, want 404", resp.StatusCode)
	}
}

func TestNames(t *testing.T) {
	if got := StageNames(abi.StageSetOf(abi.StageData, abi.StageRcpt)); !slices.Equal(got, []string{"rcpt", "data"}) {
		t.Errorf("stages %v, want [rcpt data] in session order", got)
	}
	if got := PermissionNames(abi.MayReject | abi.MaySetDestination); !slices.Equal(got, []string{"reject", "set_destination"}) {
		t.Errorf("permissions %v", got)
	}
	if got := CapabilityNames(abi.CapDNS | abi.CapHeaders); !slices.Equal(got, []string{"headers", "dns"}) {
		t.Errorf("capabilities %v", got)
	}
	if got := PermissionNames(0); got == nil || len(got) != 0 {
		t.Errorf("no permissions gave %#v; want an empty list, which JSON writes as []", got)
	}
}

// adminRequest sends a request to srv with the Host and other headers
// given, as a browser or a stranger's page might.
func adminRequest(t *testing.T, srv *httptest.Server, method, path, host string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Only our own names reach the endpoints: a name a stranger pointed at
// the listener (DNS rebinding) gets 421, for reading as for reloading.
func TestHostChecked(t *testing.T) {
	srv := testServer(t) // on 127.0.0.1
	for _, c := range []struct {
		host string
		want int
	}{
		{"", 200}, // the listener's own address, as the client dialled it
		{"localhost", 200},
		{"localhost:8025", 200},
		{"LOCALHOST.", 200},
		{"127.0.0.1:1", 200},
		{"127.5.6.7", 200},
		{"[::1]:8025", 200},
		{"mx.ours.test:8025", 200}, // the gateway's hostname
		{"MX.Ours.Test", 200},
		{"rebind.attacker.test", http.StatusMisdirectedRequest},
		{"rebind.attacker.test:8025", http.StatusMisdirectedRequest},
		{"localhost.attacker.test", http.StatusMisdirectedRequest},
		{"192.0.2.1:8025", http.StatusMisdirectedRequest}, // an address that is not this listener's
	} {
		for _, path := range []string{"/metrics", "/healthz", "/admin/chain"} {
			if got := adminRequest(t, srv, "GET", path, c.host, nil); got != c.want {
				t.Errorf("GET %s with Host %q: %d, want %d", path, c.host, got, c.want)
			}
		}
		// testServer's first reload fails and the others work: 422 or
		// 200 both say that it ran.
		got := adminRequest(t, srv, "POST", "/admin/reload", c.host, nil)
		if ran := got == 200 || got == http.StatusUnprocessableEntity; ran != (c.want == 200) || !ran && got != c.want {
			t.Errorf("POST /admin/reload with Host %q: %d, want %d", c.host, got, c.want)
		}
	}
}

// An HTTP/1.0 request without a Host header is served: no browser sends
// one (browsers always send Host), so it cannot come from a page of a
// stranger's. A foreign Host is still refused over HTTP/1.0.
func TestHTTP10WithoutHost(t *testing.T) {
	srv := testServer(t)
	for _, c := range []struct {
		request string
		want    string
	}{
		{"GET /healthz HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK"},
		{"POST /admin/reload HTTP/1.0\r\nContent-Length: 0\r\n\r\n", "HTTP/1.0 422 "}, // testServer's first reload fails: it ran
		{"GET /healthz HTTP/1.0\r\nHost: rebind.attacker.test\r\n\r\n", "HTTP/1.0 421 "},
	} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, c.request)
		status, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || !strings.HasPrefix(status, c.want) {
			t.Errorf("%q: %q %v, want %q", c.request, status, err, c.want)
		}
	}
}

// A browser's POST from another origin gets 403 and reloads nothing, even
// with a Host of ours; GETs, and POSTs from tools that are not browsers,
// still work.
func TestCrossOriginPostRefused(t *testing.T) {
	reloads := 0
	srv := httptest.NewServer(Handler(Config{
		Metrics: metrics.NewRegistry(buildinfo.Info{}),
		Hosts:   []string{"mx.ours.test"},
		Reload:  func(context.Context) ([]string, error) { reloads++; return nil, nil },
		Chain:   func() Chain { return Chain{} },
	}))
	t.Cleanup(srv.Close)
	refused := []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"},
		{"Origin": "https://attacker.test"},
		{"Origin": "http://localhost.attacker.test:8025"},
		{"Origin": "null"},
	}
	for _, h := range refused {
		if got := adminRequest(t, srv, "POST", "/admin/reload", "localhost:8025", h); got != http.StatusForbidden {
			t.Errorf("POST /admin/reload with %v: %d, want 403", h, got)
		}
	}
	if reloads != 0 {
		t.Fatalf("%d reloads ran from refused requests", reloads)
	}
	allowed := []map[string]string{
		nil, // curl, a cron job, certbot's hook
		{"Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "none"}, // typed by the operator
		{"Origin": "http://localhost:8025"},
	}
	for _, h := range allowed {
		if got := adminRequest(t, srv, "POST", "/admin/reload", "localhost:8025", h); got != http.StatusOK {
			t.Errorf("POST /admin/reload with %v: %d, want 200", h, got)
		}
	}
	if reloads != len(allowed) {
		t.Errorf("%d reloads ran, want %d", reloads, len(allowed))
	}
	// Reading is not changing: a cross-site GET is served (the browser's
	// same-origin policy keeps its answer from the page).
	if got := adminRequest(t, srv, "GET", "/healthz", "localhost", map[string]string{"Sec-Fetch-Site": "cross-site"}); got != 200 {
		t.Errorf("cross-site GET /healthz: %d, want 200", got)
	}
}
