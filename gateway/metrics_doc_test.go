package gateway_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// metricDoc is one row of the metrics table in docs/operations.md, or
// one family as /metrics serves it.
type metricDoc struct {
	typ    string
	labels []string // sorted
}

// documentedMetrics reads the metrics table of docs/operations.md. A row
// naming `prefix_*` stands for every family with that prefix.
func documentedMetrics(t *testing.T) (names map[string]metricDoc, prefixes []string) {
	t.Helper()
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Metrics\n")
	if start < 0 {
		t.Fatal("docs/operations.md has no ## Metrics section")
	}
	text = text[start+1:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}
	names = map[string]metricDoc{}
	code := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Fatalf("metrics table row with too few cells: %s", line)
		}
		var labels []string
		for _, m := range code.FindAllStringSubmatch(cells[3], -1) {
			labels = append(labels, m[1])
		}
		slices.Sort(labels)
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			if p, ok := strings.CutSuffix(m[1], "*"); ok {
				prefixes = append(prefixes, p)
				continue
			}
			if _, dup := names[m[1]]; dup {
				t.Errorf("%s is documented twice", m[1])
			}
			names[m[1]] = metricDoc{typ: strings.TrimSpace(cells[2]), labels: labels}
		}
	}
	return names, prefixes
}

// servedMetrics reads the families of an exposition in the text format:
// each family's type from its TYPE line and its label names from its
// samples (le and quantile left out: they are the type's own).
func servedMetrics(t *testing.T, body string) map[string]metricDoc {
	t.Helper()
	served := map[string]metricDoc{}
	labelName := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	family := ""
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			family = f[2]
			served[family] = metricDoc{typ: f[3]}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") || family == "" {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		if !strings.HasPrefix(name, family) {
			t.Fatalf("sample %q outside its family %s", line, family)
		}
		if rest == "" {
			continue
		}
		d := served[family]
		for _, m := range labelName.FindAllStringSubmatch(rest[:strings.LastIndex(rest, "}")], -1) {
			if l := m[1]; l != "le" && l != "quantile" && !slices.Contains(d.labels, l) {
				d.labels = append(d.labels, l)
			}
		}
		slices.Sort(d.labels)
		served[family] = d
	}
	return served
}

// The metrics table in docs/operations.md is what /metrics serves, both
// ways: every family served is documented with its type and labels, and
// every documented one is served, once a message has gone through.
func TestMetricsDocumented(t *testing.T) {
	// With the submission service on, which has families of its own.
	e := startSubmission(t, "", envOptions{})
	// Series whose label values are known show at 0 before any mail.
	before := scrape(t, e)
	for _, key := range []string{
		`sluice_auth_results_total{method="dmarc",result="fail"}`,
		`sluice_auth_results_total{method="dkim",result="none"}`,
		`sluice_tls_sessions_total{direction="inbound",version="TLS1.3"}`,
		`sluice_tls_sessions_total{direction="outbound",version="none"}`,
		`sluice_relay_seconds_count{step="connect"}`,
		`sluice_dns_lookups_total{rcode="SERVFAIL",type="MX"}`,
		`sluice_dns_lookup_seconds_count{type="TXT"}`,
		`sluice_relay_replies_total{class="5xx",step="rcpt"}`,
	} {
		if v, ok := before[key]; !ok || v != 0 {
			t.Errorf("%s before any mail: %v (served %v), want 0", key, v, ok)
		}
	}
	// A message over STARTTLS, checked, through both plugins, relayed.
	cl := tlsClient(t, e.addr)
	if err := sendMail(t, cl, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	cl.Quit()
	waitFor(t, "the session to end", func() bool { return scrape(t, e)["sluice_sessions_current"] == 0 })

	// What the message moved: each check once, TLS both ways, each relay
	// step, DNS lookups.
	after := scrape(t, e)
	sum := func(prefix string) (n float64) {
		for k, v := range after {
			if strings.HasPrefix(k, prefix) {
				n += v
			}
		}
		return n
	}
	for prefix, want := range map[string]float64{
		`sluice_auth_results_total{method="spf",`:                         1,
		`sluice_auth_results_total{method="dkim",`:                        1,
		`sluice_auth_results_total{method="arc",`:                         1,
		`sluice_auth_results_total{method="dmarc",`:                       1,
		`sluice_auth_results_total{method="arc",result="none"}`:           1, // the message has no ARC set
		`sluice_tls_sessions_total{direction="inbound",version="TLS1.3"}`: 1,
		`sluice_tls_sessions_total{direction="outbound",`:                 1,
		`sluice_relay_seconds_count{step="mail"}`:                         1,
		`sluice_relay_seconds_count{step="data"}`:                         1,
	} {
		if got := sum(prefix); got != want {
			t.Errorf("%s...: %v, want %v", prefix, got, want)
		}
	}
	if sum(`sluice_relay_seconds_count{step="connect"}`) < 1 || sum(`sluice_dns_lookups_total{`) < 1 || sum(`sluice_dns_lookup_seconds_count{`) < 1 {
		t.Errorf("no connect time or DNS lookups counted: connect %v, lookups %v", sum(`sluice_relay_seconds_count{step="connect"}`), sum(`sluice_dns_lookups_total{`))
	}

	code, body := adminDo(t, e, "GET", "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	served := servedMetrics(t, string(body))
	documented, prefixes := documentedMetrics(t)

	matched := map[string]bool{}
	for name, s := range served {
		d, ok := documented[name]
		if i := slices.IndexFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }); !ok && i >= 0 {
			// A row of its own goes before a row for a prefix.
			matched[prefixes[i]] = true
			continue
		}
		if !ok {
			t.Errorf("%s (%s, labels %v) is served but not documented in docs/operations.md", name, s.typ, s.labels)
			continue
		}
		if d.typ != s.typ || !slices.Equal(d.labels, s.labels) {
			t.Errorf("%s is documented as a %s with labels %v, served as a %s with labels %v", name, d.typ, d.labels, s.typ, s.labels)
		}
	}
	// Series labelled with a plugin's name show once the plugin counted
	// with counter_add or failed to load: neither happens to a message
	// that goes through (gateway_test serves the load failures). The
	// certificate's come with a certificate from a file or ACME, and ACME
	// failures with a failure (acme_test serves both).
	untilUsed := []string{"sluice_plugin_counter_total", "sluice_plugin_counter_dropped_total", "sluice_plugin_load_failures_total",
		"sluice_tls_certificate_expiry_timestamp_seconds", "sluice_acme_failures_total"}
	for name := range documented {
		if _, ok := served[name]; !ok && !slices.Contains(untilUsed, name) {
			t.Errorf("%s is documented in docs/operations.md but not served", name)
		}
	}
	for _, p := range prefixes {
		if !matched[p] {
			t.Errorf("no %s* metric is served, though the table has a row for them", p)
		}
	}
}
