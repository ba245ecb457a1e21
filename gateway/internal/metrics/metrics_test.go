package metrics

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-mail/sluice/gateway/internal/buildinfo"
)

// sample is one line of the exposition as the reference parser read it.
type sample struct {
	Name   string
	Labels map[string]string
	Value  any // a number, or "+Inf"
	Type   string
	Help   string
}

// parse reads exposition text with the Prometheus project's own Python
// client parser (Debian's python3-prometheus-client), so that what we
// serve is checked by a reader from outside the Go library: the text
// format 0.0.4's parser, or with openMetrics the OpenMetrics one.
func parse(t *testing.T, text string, openMetrics bool) []sample {
	t.Helper()
	out, stderr, err := runParser(text, openMetrics)
	if err != nil {
		t.Fatalf("the Prometheus parser refused our output: %v\n%s\noutput was:\n%s", err, stderr, text)
	}
	var raw [][]any
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	var samples []sample
	for _, r := range raw {
		s := sample{Name: r[0].(string), Labels: map[string]string{}, Value: r[2], Type: r[3].(string), Help: r[4].(string)}
		for k, v := range r[1].(map[string]any) {
			s.Labels[k] = v.(string)
		}
		samples = append(samples, s)
	}
	return samples
}

// runParser runs testdata/parse.py on text.
func runParser(text string, openMetrics bool) (out []byte, stderr string, err error) {
	args := []string{"testdata/parse.py"}
	if openMetrics {
		args = append(args, "--openmetrics")
	}
	cmd := exec.Command("/usr/bin/python3", args...)
	cmd.Stdin = strings.NewReader(text)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err = cmd.Output()
	return out, errOut.String(), err
}

// find returns the value of the sample with this name and labels.
func find(t *testing.T, samples []sample, name string, labels map[string]string) any {
	t.Helper()
next:
	for _, s := range samples {
		if s.Name != name || len(s.Labels) != len(labels) {
			continue
		}
		for k, v := range labels {
			if s.Labels[k] != v {
				continue next
			}
		}
		return s.Value
	}
	t.Fatalf("no sample %s%v", name, labels)
	return nil
}

// scrape gets h's exposition as a scraper that sends accept would.
func scrape(t *testing.T, h http.Handler, accept string) (contentType, body string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return resp.Header.Get("Content-Type"), string(b)
}

// testRegistry holds a metric of each kind the gateway uses, with values
// that show whether they are written right.
func testRegistry() (*prometheus.Registry, string) {
	r := NewRegistry(buildinfo.Info{Version: "v1.2.3", Revision: "abc123", GoVersion: "go1.99", RSASigner: "Go crypto/rsa"})
	f := promauto.With(r)
	msgs := f.NewCounterVec(prometheus.CounterOpts{Name: "test_messages_total", Help: "Messages by outcome.\nSecond line with a \\ backslash."}, []string{"outcome"})
	msgs.WithLabelValues("delivered").Add(3)
	msgs.WithLabelValues("rejected").Inc()
	weird := "quote \" backslash \\ newline \n end, and ünïcode"
	msgs.WithLabelValues(weird).Inc()
	f.NewCounter(prometheus.CounterOpts{Name: "test_plain_total", Help: "A counter without labels, never touched."})
	g := f.NewGauge(prometheus.GaugeOpts{Name: "test_sessions", Help: "Open sessions."})
	g.Add(5)
	g.Add(-2)
	h := f.NewHistogramVec(prometheus.HistogramOpts{Name: "test_call_seconds", Help: "Call latency.", Buckets: []float64{0.001, 0.01, 0.1}}, []string{"plugin", "stage"})
	router := h.WithLabelValues("router", "rcpt")
	for _, v := range []float64{0.0005, 0.001, 0.002, 0.05, 3} {
		router.Observe(v)
	}
	h.WithLabelValues("dmarc", "data").Observe(0.02)
	return r, weird
}

// The Prometheus text format, as a scraper that does not ask for
// OpenMetrics gets it, parses with the reference parser and says what was
// counted; the registry has the collectors every Go program is expected
// to have and sluice_build_info.
func TestTextFormatParses(t *testing.T) {
	r, weird := testRegistry()
	ct, body := scrape(t, Handler(r, nil), "")
	if !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the text format 0.0.4", ct)
	}
	s := parse(t, body, false)
	checkSamples(t, s, weird, false)
}

// A scraper that offers OpenMetrics gets it, and the OpenMetrics parser
// reads the same values.
func TestOpenMetricsNegotiated(t *testing.T) {
	r, weird := testRegistry()
	ct, body := scrape(t, Handler(r, nil), "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	if !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") || !strings.HasSuffix(body, "# EOF\n") {
		t.Fatalf("Content-Type %q, body ending %q; want OpenMetrics 1.0.0, ending # EOF", ct, body[max(0, len(body)-20):])
	}
	// The Go collector serves a gauge go_memstats_alloc_bytes beside the
	// counter go_memstats_alloc_bytes_total, which OpenMetrics names the
	// same family (prometheus/client_golang issue 829). Prometheus takes
	// both; the strict reference parser does not, so the gauge is left out
	// here, and no metric of ours may collide so. docs/operations.md says
	// so: if the library stops serving the clash, this test says to take
	// the caveat out.
	if _, stderr, err := runParser(body, true); err == nil {
		t.Error("the whole OpenMetrics output parses: client_golang issue 829 is fixed; take its caveat out of docs/operations.md (Metrics) and RATIONALE.md, and dropFamily out of this test")
	} else if !strings.Contains(stderr, "go_memstats_alloc_bytes") {
		t.Errorf("the OpenMetrics parser refused our output for another reason than client_golang issue 829:\n%s", stderr)
	}
	s := parse(t, dropFamily(body, "# TYPE go_memstats_alloc_bytes gauge\n"), true)
	checkSamples(t, s, weird, true)
}

// dropFamily leaves out of an exposition the family whose TYPE line is
// typeLine: its HELP, TYPE and sample lines.
func dropFamily(body, typeLine string) string {
	var families []string // each from its HELP line to the next
	for _, line := range strings.SplitAfter(body, "\n") {
		if strings.HasPrefix(line, "# HELP ") || len(families) == 0 {
			families = append(families, "")
		}
		families[len(families)-1] += line
	}
	var out strings.Builder
	for _, f := range families {
		if !strings.Contains(f, "\n"+typeLine) {
			out.WriteString(f)
		}
	}
	return out.String()
}

func checkSamples(t *testing.T, s []sample, weird string, openMetrics bool) {
	t.Helper()
	// OpenMetrics names a counter family without _total and its sample
	// with it; the text format uses the sample's name for both.
	checks := []struct {
		name   string
		labels map[string]string
		want   any
	}{
		{"test_messages_total", map[string]string{"outcome": "delivered"}, 3.0},
		{"test_messages_total", map[string]string{"outcome": "rejected"}, 1.0},
		{"test_messages_total", map[string]string{"outcome": weird}, 1.0},
		{"test_plain_total", nil, 0.0},
		{"test_sessions", nil, 3.0},
		// Buckets are cumulative and a value on a bound counts in it.
		{"test_call_seconds_bucket", map[string]string{"plugin": "router", "stage": "rcpt", "le": "0.001"}, 2.0},
		{"test_call_seconds_bucket", map[string]string{"plugin": "router", "stage": "rcpt", "le": "0.01"}, 3.0},
		{"test_call_seconds_bucket", map[string]string{"plugin": "router", "stage": "rcpt", "le": "0.1"}, 4.0},
		{"test_call_seconds_bucket", map[string]string{"plugin": "router", "stage": "rcpt", "le": "+Inf"}, 5.0},
		{"test_call_seconds_count", map[string]string{"plugin": "router", "stage": "rcpt"}, 5.0},
		{"test_call_seconds_sum", map[string]string{"plugin": "router", "stage": "rcpt"}, 3.0535},
		{"test_call_seconds_count", map[string]string{"plugin": "dmarc", "stage": "data"}, 1.0},
		{"sluice_build_info", map[string]string{"version": "v1.2.3", "revision": "abc123", "goversion": "go1.99", "rsa_signer": "Go crypto/rsa"}, 1.0},
	}
	for _, c := range checks {
		got := find(t, s, c.name, c.labels)
		if f, ok := got.(float64); ok {
			if w := c.want.(float64); f < w-1e-9 || f > w+1e-9 {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		} else if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	types := map[string]string{}
	seen := map[string]bool{}
	for _, x := range s {
		types[x.Name] = x.Type
		seen[x.Name] = true
		if x.Name == "test_messages_total" && x.Help != "Messages by outcome.\nSecond line with a \\ backslash." {
			t.Errorf("help came back as %q", x.Help)
		}
	}
	for name, want := range map[string]string{"test_messages_total": "counter", "test_sessions": "gauge", "test_call_seconds_bucket": "histogram"} {
		if types[name] != want {
			t.Errorf("%s has type %q, want %q", name, types[name], want)
		}
	}
	// The process and Go runtime collectors.
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "go_goroutines", "go_memstats_heap_alloc_bytes"} {
		if !seen[name] {
			t.Errorf("no %s: the process or Go collector is missing", name)
		}
	}
}

// Each registry stands alone: nothing goes to the library's global
// default registry, so two gateways in one process count apart.
func TestRegistriesApart(t *testing.T) {
	a, b := NewRegistry(buildinfo.Info{}), NewRegistry(buildinfo.Info{})
	promauto.With(a).NewCounter(prometheus.CounterOpts{Name: "sluice_apart_total", Help: "x"}).Inc()
	promauto.With(b).NewCounter(prometheus.CounterOpts{Name: "sluice_apart_total", Help: "x"})
	_, body := scrape(t, Handler(b, nil), "")
	if !strings.Contains(body, "\nsluice_apart_total 0\n") {
		t.Errorf("the second registry shows the first one's count:\n%s", body)
	}
	if n, _ := prometheus.DefaultGatherer.Gather(); len(n) > 0 {
		for _, f := range n {
			if strings.HasPrefix(f.GetName(), "sluice_") {
				t.Errorf("%s is on the global default registry", f.GetName())
			}
		}
	}
}
