package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/metrics"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// A handler whose reload fails with two file:line errors the first time
// and works the second.
func testServer(t *testing.T) *httptest.Server {
	t.Helper()
	reg := metrics.NewRegistry()
	reg.Counter("sluice_test_total", "A test counter.").With().Add(3)
	generation := uint64(1)
	calls := 0
	srv := httptest.NewServer(Handler(Config{
		Metrics: reg,
		Reload: func(context.Context) error {
			calls++
			if calls == 1 {
				return errors.New("gateway.toml:12: plugin router: config refused: bad rule\ngateway.toml:20: plugin dmarc: no such file")
			}
			generation++
			return nil
		},
		Chain: func() Chain {
			return Chain{Generation: generation, OpenGenerations: 1, Plugins: []Plugin{{Name: "router", SHA256: "ab12"}}}
		},
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestReloadAnswers(t *testing.T) {
	srv := testServer(t)
	var a struct {
		OK     bool     `json:"ok"`
		Errors []string `json:"errors"`
		Chain  *Chain   `json:"chain"`
	}
	resp, err := http.Post(srv.URL+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	want := []string{"gateway.toml:12: plugin router: config refused: bad rule", "gateway.toml:20: plugin dmarc: no such file"}
	if resp.StatusCode != http.StatusUnprocessableEntity || a.OK || !slices.Equal(a.Errors, want) || a.Chain != nil {
		t.Errorf("failed reload: %d %+v; want 422 with one error per line", resp.StatusCode, a)
	}

	a.Errors = nil
	resp, err = http.Post(srv.URL+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !a.OK || len(a.Errors) != 0 || a.Chain == nil || a.Chain.Generation != 2 {
		t.Errorf("good reload: %d %+v; want 200 with the new chain", resp.StatusCode, a)
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
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != metrics.ContentType || !strings.Contains(body, "\nsluice_test_total 3\n") {
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
