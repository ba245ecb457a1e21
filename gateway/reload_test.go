package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// swapPlugin is a [[plugin]] table for the test plugin the hot-swap tests
// replace (testdata/swap): it routes to me@dest.test and tags each message
// with its version.
const swapPlugin = `
[[plugin]]
name = "tagger"
path = %q
stages = ["rcpt"]
instances = 2
`

// swapEnv starts a gateway whose chain is version 1 of the test plugin,
// from a copy the test may replace.
func swapEnv(t *testing.T, admin string) (e *env, wasmPath string) {
	t.Helper()
	wasmPath = filepath.Join(t.TempDir(), "tagger.wasm")
	copyFile(t, wasmbuild.ForTest(t, "./gateway/testdata/swap/v1"), wasmPath)
	e = startEnv(t, envOptions{admin: admin, plugins: fmt.Sprintf(swapPlugin, wasmPath)})
	return e, wasmPath
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile puts new contents at path the way operators should: written
// beside it, then renamed over it, so that no reader sees half a file.
func replaceFile(t *testing.T, path string, contents []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, contents, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// adminChain is GET /admin/chain's answer.
type adminChain struct {
	Generation      uint64 `json:"generation"`
	OpenGenerations int    `json:"open_generations"`
	Plugins         []struct {
		Name        string   `json:"name"`
		Path        string   `json:"path"`
		SHA256      string   `json:"sha256"`
		ABIVersion  uint32   `json:"abi_version"`
		Stages      []string `json:"stages"`
		Permissions []string `json:"permissions"`
		Instances   int      `json:"instances"`
	} `json:"plugins"`
}

func adminDo(t *testing.T, e *env, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+e.gw.AdminAddr()+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func getChain(t *testing.T, e *env) adminChain {
	t.Helper()
	code, body := adminDo(t, e, "GET", "/admin/chain")
	var c adminChain
	if err := json.Unmarshal(body, &c); code != 200 || err != nil {
		t.Fatalf("GET /admin/chain: %d %v\n%s", code, err, body)
	}
	return c
}

// reloadAnswer is POST /admin/reload's answer.
type reloadAnswer struct {
	OK         bool       `json:"ok"`
	Errors     []string   `json:"errors"`
	Chain      adminChain `json:"chain"`
	NotApplied []string   `json:"not_applied"`
}

func postReload(t *testing.T, e *env) (int, reloadAnswer) {
	t.Helper()
	code, body := adminDo(t, e, "POST", "/admin/reload")
	var a reloadAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("POST /admin/reload: %d %v\n%s", code, err, body)
	}
	return code, a
}

// scrape reads /metrics with the Prometheus project's Python parser and
// returns each sample's value by `name{label="value",...}`, labels sorted.
func scrape(t *testing.T, e *env) map[string]float64 {
	t.Helper()
	code, body := adminDo(t, e, "GET", "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	cmd := exec.Command("/usr/bin/python3", "internal/metrics/testdata/parse.py")
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v\n%s\n%s", err, stderr.Bytes(), body)
	}
	var raw [][]any
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	samples := map[string]float64{}
	for _, r := range raw {
		var labels []string
		for k, v := range r[1].(map[string]any) {
			labels = append(labels, fmt.Sprintf("%s=%q", k, v))
		}
		sort.Strings(labels)
		key := r[0].(string)
		if len(labels) > 0 {
			key += "{" + strings.Join(labels, ",") + "}"
		}
		switch v := r[2].(type) {
		case float64:
			samples[key] = v
		case string:
			samples[key], _ = strconv.ParseFloat(v, 64)
		}
	}
	return samples
}

// waitFor polls cond every 50 ms for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// swapSession is what one client session saw.
type swapSession struct {
	started time.Time // when its EHLO was answered: its chain was taken then
	ids     []string  // the messages it sent, each delivered
}

// The hot swap: clients keep sending while the plugin's .wasm is
// replaced on disk. The watcher notices, the new chain is built and
// swapped in, and no message fails; every session that starts after the
// swap gets the new plugin, and every session keeps the chain it started
// with to its end, so its messages all carry one version. The old chain
// is closed once its last session is done.
func TestHotSwapUnderLoad(t *testing.T) {
	e, wasm := swapEnv(t, `watch_interval = "100ms"`)
	v2 := wasmbuild.ForTest(t, "./gateway/testdata/swap/v2")
	v2Bytes, _ := os.ReadFile(v2)
	if c := getChain(t, e); c.Generation != 1 || c.Plugins[0].SHA256 != fileSHA256(t, wasm) {
		t.Fatalf("at start the chain is %+v", c)
	}

	const workers, perSession = 8, 3
	var (
		mu       sync.Mutex
		sessions []swapSession
		failures []string
		sent     atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				s, err := sendSession(e.addr, fmt.Sprintf("w%d-s%d", w, n), perSession)
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					sessions = append(sessions, s)
				}
				mu.Unlock()
				sent.Add(int64(len(s.ids)))
			}
		})
	}
	waitFor(t, "mail to flow", func() bool { return sent.Load() >= 40 })

	replaceFile(t, wasm, v2Bytes)
	var swapped time.Time
	waitFor(t, "the new module in the chain", func() bool {
		c := getChain(t, e)
		swapped = time.Now()
		return c.Plugins[0].SHA256 == fileSHA256(t, v2)
	})
	after := sent.Load()
	waitFor(t, "mail after the swap", func() bool { return sent.Load() >= after+40 })
	close(stop)
	wg.Wait()

	if len(failures) > 0 {
		t.Fatalf("%d sessions failed, e.g. %s", len(failures), failures[0])
	}
	versions := map[string]string{} // message id → version the destination got
	for _, d := range e.dest.deliveries() {
		versions[headerValue(d.data, "X-Test-Id")] = headerValue(d.data, "X-Swap-Version")
	}
	var before, later, v1Sessions, v2Sessions int
	for _, s := range sessions {
		seen := map[string]bool{}
		for _, id := range s.ids {
			v, ok := versions[id]
			if !ok {
				t.Fatalf("message %s was accepted but never reached the destination", id)
			}
			seen[v] = true
		}
		if len(seen) != 1 {
			t.Errorf("session of %v saw versions %v: a session must keep its chain to the end", s.ids, seen)
		}
		switch {
		case seen["1"]:
			v1Sessions++
		case seen["2"]:
			v2Sessions++
		default:
			t.Errorf("session of %v saw versions %v", s.ids, seen)
		}
		if s.started.After(swapped) {
			later++
			if !seen["2"] {
				t.Errorf("session of %v started after the swap but ran version %v", s.ids, seen)
			}
		} else {
			before++
		}
	}
	if v1Sessions == 0 || v2Sessions == 0 || later == 0 {
		t.Errorf("sessions: %d on v1, %d on v2, %d started after the swap; the test did not span the swap", v1Sessions, v2Sessions, later)
	}
	t.Logf("%d messages in %d sessions (%d before the swap was visible, %d after), 0 failed", sent.Load(), len(sessions), before, later)

	// With every session over, only the new chain is open.
	waitFor(t, "the old chain to close", func() bool { return getChain(t, e).OpenGenerations == 1 })
	if !strings.Contains(e.logs.String(), "generation closed") || !strings.Contains(e.logs.String(), "generation=1") {
		t.Errorf("the log does not say that generation 1 closed")
	}
	m := scrape(t, e)
	if m[`sluice_reloads_total{result="ok"}`] != 1 || m[`sluice_reloads_total{result="failed"}`] != 0 || m["sluice_config_generation"] != 2 {
		t.Errorf("reload metrics: ok %v, failed %v, generation %v; want 1, 0, 2",
			m[`sluice_reloads_total{result="ok"}`], m[`sluice_reloads_total{result="failed"}`], m["sluice_config_generation"])
	}
	if got := m[`sluice_messages_total{outcome="delivered"}`]; got != float64(sent.Load()) {
		t.Errorf("sluice_messages_total{outcome=delivered} = %v, want %d", got, sent.Load())
	}
}

// sendSession sends n messages in one SMTP session, each tagged with an
// id, and fails on any reply but success.
func sendSession(addr, name string, n int) (swapSession, error) {
	var s swapSession
	c, err := smtp.Dial(addr)
	if err != nil {
		return s, err
	}
	defer c.Close()
	// Taken before EHLO, when the session takes its chain: a session
	// started after the swap was visible must run the new one.
	s.started = time.Now()
	if err := c.Hello("sender.example.org"); err != nil {
		return s, fmt.Errorf("%s: EHLO: %w", name, err)
	}
	if s.ids, err = sendNumbered(c, name, n); err != nil {
		return s, err
	}
	return s, c.Quit()
}

// headerValue returns the first value of a header field in a message.
func headerValue(msg []byte, name string) string {
	m := regexp.MustCompile(`(?mi)^` + regexp.QuoteMeta(name) + `: *(.*?)\r?$`).FindSubmatch(msg)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// sendOne sends one message to info@ours.test and returns the version
// the destination saw on it.
func sendOne(t *testing.T, e *env, id string) string {
	t.Helper()
	if _, err := sendSession(e.addr, id, 1); err != nil {
		t.Fatalf("sending %s: %v", id, err)
	}
	for _, d := range e.dest.deliveries() {
		if headerValue(d.data, "X-Test-Id") == id+"-m0" {
			return headerValue(d.data, "X-Swap-Version")
		}
	}
	t.Fatalf("%s never reached the destination", id)
	return ""
}

// A reload that cannot build its chain changes nothing: the old chain
// keeps serving, and the error, at its file and line, goes to the caller,
// the log and the metrics; a setting that needs a restart is not reported
// as kept, since nothing was applied. Once the problem is fixed, a reload
// works, and its answer and the log name the setting it did not apply.
func TestFailedReloadKeepsTheOldChain(t *testing.T) {
	e, wasm := swapEnv(t, `watch_interval = "1h"`) // only explicit reloads here
	v1SHA := fileSHA256(t, wasm)
	restartOnly := strings.Replace(e.cfgText, "[smtp]\n", "[smtp]\nmax_recipients = 7\n", 1)
	if restartOnly == e.cfgText {
		t.Fatal("no [smtp] in the configuration")
	}
	pluginLine := lineOf(t, restartOnly, `name = "tagger"`) - 1
	const notApplied = "settings changed that a reload does not apply; they keep their running values until the next start"

	// A module that is not WebAssembly, and a setting that needs a
	// restart.
	os.WriteFile(e.cfgPath, []byte(restartOnly), 0o644)
	replaceFile(t, wasm, []byte("not a module"))
	code, a := postReload(t, e)
	want := fmt.Sprintf("%s:%d: plugin tagger: ", e.cfgPath, pluginLine)
	if code != http.StatusUnprocessableEntity || a.OK || len(a.Errors) != 1 || !strings.HasPrefix(a.Errors[0], want) ||
		!strings.Contains(a.Errors[0], wasm) {
		t.Errorf("reload of a broken module answered %d %+v; want 422 with one error starting %q", code, a, want)
	}
	if c := getChain(t, e); c.Generation != 1 || c.Plugins[0].SHA256 != v1SHA {
		t.Errorf("after a failed reload the chain is %+v; want generation 1 with the old module", c)
	}
	if v := sendOne(t, e, "after-bad-module"); v != "1" {
		t.Errorf("after a failed reload mail went through version %q; want the old chain, 1", v)
	}

	// A configuration that does not parse, with the module fixed.
	copyFile(t, wasmbuild.ForTest(t, "./gateway/testdata/swap/v2"), wasm)
	broken := strings.Replace(e.cfgText, `stages = ["rcpt"]`, `stages = ["rcpt"`, 1)
	os.WriteFile(e.cfgPath, []byte(broken), 0o644)
	code, a = postReload(t, e)
	if code != http.StatusUnprocessableEntity || len(a.Errors) == 0 || !strings.HasPrefix(a.Errors[0], e.cfgPath+":") {
		t.Errorf("reload of a broken configuration answered %d %+v; want 422 with file:line errors", code, a)
	}
	if v := sendOne(t, e, "after-bad-config"); v != "1" {
		t.Errorf("after a failed reload mail went through version %q; want 1", v)
	}
	m := scrape(t, e)
	if m[`sluice_reloads_total{result="failed"}`] != 2 || m[`sluice_reloads_total{result="ok"}`] != 0 {
		t.Errorf("reloads: failed %v, ok %v; want 2 and 0", m[`sluice_reloads_total{result="failed"}`], m[`sluice_reloads_total{result="ok"}`])
	}
	if n := strings.Count(e.logs.String(), "reload failed; the previous generation keeps serving"); n != 2 {
		t.Errorf("the log has %d reload failures, want 2", n)
	}
	if strings.Contains(e.logs.String(), notApplied) {
		t.Errorf("a failed reload logged %q: nothing was applied", notApplied)
	}

	// Fixed: the reload answers with the new chain, which serves at once,
	// and names the setting it did not apply.
	os.WriteFile(e.cfgPath, []byte(restartOnly), 0o644)
	code, a = postReload(t, e)
	if code != http.StatusOK || !a.OK || a.Chain.Generation != 2 || a.Chain.Plugins[0].SHA256 != fileSHA256(t, wasm) {
		t.Fatalf("reload after the fix answered %d %+v", code, a)
	}
	if !slices.Equal(a.NotApplied, []string{"smtp.max_recipients"}) {
		t.Errorf("reload after the fix: not_applied = %q, want [smtp.max_recipients]", a.NotApplied)
	}
	if lines := logLines(t, e.logs.String(), notApplied); len(lines) != 1 || lines[0]["settings"] != "smtp.max_recipients" {
		t.Errorf("after the reload, lines %q: %v; want one naming smtp.max_recipients", notApplied, lines)
	}
	if v := sendOne(t, e, "after-fix"); v != "2" {
		t.Errorf("after the reload mail went through version %q; want 2", v)
	}
}

// lineOf returns the 1-based line of the first line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("no %q in the text", s)
	return 0
}

// Editing gateway.toml reloads by itself. A setting bound to the
// listeners is not applied, and the warning names it by its dotted key.
func TestConfigEditReloads(t *testing.T) {
	e := startEnv(t, envOptions{admin: `watch_interval = "100ms"`})
	c := e.client(t)
	c.Mail("alice@example.org", nil)
	wantReply(t, "RCPT before the edit", c.Rcpt("gone@ours.test", nil), 550, smtp.EnhancedCode{5, 1, 1}, "Gone: this address was retired")
	c.Quit()

	edited := strings.Replace(e.cfgText, "Gone: this address was retired", "Gone since the reload", 1)
	edited = strings.Replace(edited, "[smtp]\n", "[smtp]\nmax_recipients = 7\n", 1)
	replaceFile(t, e.cfgPath, []byte(edited))
	waitFor(t, "the reload", func() bool { return getChain(t, e).Generation >= 2 })

	c = e.client(t)
	c.Mail("alice@example.org", nil)
	wantReply(t, "RCPT after the edit", c.Rcpt("gone@ours.test", nil), 550, smtp.EnhancedCode{5, 1, 1}, "Gone since the reload")
	logs := e.logs.String()
	if !strings.Contains(logs, "settings changed that a reload does not apply") || !strings.Contains(logs, "settings=smtp.max_recipients") {
		t.Errorf("no warning that smtp.max_recipients needs a restart in the log:\n%s", logs)
	}
}

// The admin listener: health, the chain with each module's hash, metrics
// that parse as Prometheus text and move when mail flows, and POST only
// for reloads.
func TestAdminEndpoints(t *testing.T) {
	e := startEnv(t, envOptions{})
	if code, body := adminDo(t, e, "GET", "/healthz"); code != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := adminDo(t, e, "GET", "/admin/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /admin/reload: %d, want 405", code)
	}

	c := getChain(t, e)
	if c.Generation != 1 || c.OpenGenerations != 1 || len(c.Plugins) != 2 {
		t.Fatalf("chain: %+v", c)
	}
	for i, want := range []struct{ name, pkg, stages string }{
		{"router", "./plugins/router", "rcpt"},
		{"dmarc", "./plugins/dmarc", "data"},
	} {
		p := c.Plugins[i]
		path := wasmbuild.ForTest(t, want.pkg)
		if p.Name != want.name || p.Path != path || p.SHA256 != fileSHA256(t, path) || p.ABIVersion != 1 ||
			strings.Join(p.Stages, ",") != want.stages || p.Instances < 1 {
			t.Errorf("plugin %d: %+v; want %s at %s with its sha256, ABI 1, stages %s", i, p, want.name, path, want.stages)
		}
	}
	if !slices.Contains(c.Plugins[0].Permissions, "set_destination") || !slices.Contains(c.Plugins[0].Permissions, "reject") {
		t.Errorf("router's permissions %v lack set_destination or reject", c.Plugins[0].Permissions)
	}

	before := scrape(t, e)
	// After STARTTLS go-smtp starts a second session on the connection;
	// it is still one client's session.
	cl := tlsClient(t, e.addr)
	if err := sendMail(t, cl, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	cl.Mail("alice@example.org", nil)
	wantReply(t, "RCPT", cl.Rcpt("gone@ours.test", nil), 550, smtp.EnhancedCode{5, 1, 1}, "Gone")
	cl.Quit()
	waitFor(t, "the session to end", func() bool { return scrape(t, e)["sluice_sessions_current"] == 0 })
	after := scrape(t, e)

	for key, delta := range map[string]float64{
		"sluice_sessions_total":                                                     1,
		`sluice_messages_total{outcome="delivered"}`:                                1,
		`sluice_messages_total{outcome="rejected"}`:                                 0,
		`sluice_plugin_call_seconds_count{plugin="router",stage="rcpt"}`:            2,
		`sluice_plugin_call_seconds_count{plugin="dmarc",stage="data"}`:             1,
		`sluice_stage_seconds_count{stage="rcpt"}`:                                  2,
		`sluice_relay_replies_total{class="2xx",step="rcpt"}`:                       1,
		`sluice_relay_replies_total{class="2xx",step="data"}`:                       1,
		`sluice_plugin_call_seconds_bucket{le="+Inf",plugin="router",stage="rcpt"}`: 2,
	} {
		if got := after[key] - before[key]; got != delta {
			t.Errorf("%s moved by %v, want %v", key, got, delta)
		}
	}
	if after["sluice_config_generation"] != 1 {
		t.Errorf("sluice_config_generation = %v, want 1", after["sluice_config_generation"])
	}
	// The message's log line has each plugin's verdict and its time.
	if !regexp.MustCompile(`msg=message .*plugins=router@rcpt:continue:[0-9.]+[µm]?s,dmarc@data:[a-z]+:[0-9.]+[µm]?s chain=1`).MatchString(e.logs.String()) {
		t.Errorf("no message line with each plugin's verdict and time:\n%s", e.logs.String())
	}
}

// Reload's cost: read the configuration, then load (compile from the
// cache, start and configure every instance) the router and dmarc plugins
// and swap the chain in.
func BenchmarkReload(b *testing.B) {
	e := startEnv(b, envOptions{})
	ctx := context.Background()
	for b.Loop() {
		if err := e.gw.Reload(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// sluice_build_info says what makes the build's RSA signatures.
func TestBuildInfoMetricSaysRSASigner(t *testing.T) {
	e := startEnv(t, envOptions{})
	want := fmt.Sprintf("rsa_signer=%q", dkim.RSABackend())
	if _, m := adminDo(t, e, "GET", "/metrics"); !bytes.Contains(m, []byte(want)) {
		t.Errorf("metrics lack %s:\n%s", want, m)
	}
}
