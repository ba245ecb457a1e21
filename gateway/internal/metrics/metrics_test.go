package metrics

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
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
// write is checked by a reader we did not write.
func parse(t *testing.T, text string) []sample {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "testdata/parse.py")
	cmd.Stdin = strings.NewReader(text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the Prometheus parser refused our output: %v\n%s\noutput was:\n%s", err, stderr.Bytes(), text)
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

func TestTextFormatParses(t *testing.T) {
	r := NewRegistry()
	msgs := r.Counter("test_messages_total", "Messages by outcome.\nSecond line with a \\ backslash.", "outcome")
	msgs.With("delivered").Add(3)
	msgs.With("rejected").Inc()
	weird := "quote \" backslash \\ newline \n end, and ünïcode"
	msgs.With(weird).Inc()
	r.Counter("test_plain_total", "A counter without labels, never touched.")
	g := r.Gauge("test_sessions", "Open sessions.")
	g.With().Add(5)
	g.With().Add(-2)
	h := r.Histogram("test_call_seconds", "Call latency.", []float64{0.001, 0.01, 0.1}, "plugin", "stage")
	router := h.With("router", "rcpt")
	for _, v := range []float64{0.0005, 0.001, 0.002, 0.05, 3} {
		router.Observe(v)
	}
	h.With("dmarc", "data").Observe(0.02)

	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	s := parse(t, b.String())

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
	for _, x := range s {
		types[x.Name] = x.Type
		if x.Name == "test_messages_total" && x.Help != "Messages by outcome.\nSecond line with a \\ backslash." {
			t.Errorf("help came back as %q", x.Help)
		}
	}
	for name, want := range map[string]string{"test_messages_total": "counter", "test_sessions": "gauge", "test_call_seconds_bucket": "histogram"} {
		if types[name] != want {
			t.Errorf("%s has type %q, want %q", name, types[name], want)
		}
	}
}

// The output is stable: families by name, series by label values, so that
// two scrapes of an idle gateway are identical.
func TestTextFormatOrder(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("b_total", "b", "k")
	c.With("z").Inc()
	c.With("a").Inc()
	r.Gauge("a_gauge", "a").With().Set(1.5)
	var b bytes.Buffer
	r.WriteText(&b)
	want := "# HELP a_gauge a\n# TYPE a_gauge gauge\na_gauge 1.5\n" +
		"# HELP b_total b\n# TYPE b_total counter\nb_total{k=\"a\"} 1\nb_total{k=\"z\"} 1\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestRegisterTwiceGivesTheSameFamily(t *testing.T) {
	r := NewRegistry()
	r.Counter("x_total", "x", "a").With("1").Inc()
	r.Counter("x_total", "x", "a").With("1").Inc()
	if v := r.Counter("x_total", "x", "a").With("1").Value(); v != 2 {
		t.Errorf("value %v, want 2: the second registration made a new family", v)
	}
	mustPanic(t, "other labels", func() { r.Counter("x_total", "x", "b") })
	mustPanic(t, "other type", func() { r.Gauge("x_total", "x", "a") })
	mustPanic(t, "bad name", func() { r.Counter("x-total", "x") })
	mustPanic(t, "reserved label", func() { r.Histogram("h", "h", nil, "le") })
	mustPanic(t, "wrong value count", func() { r.Counter("x_total", "x", "a").With("1", "2") })
	mustPanic(t, "negative counter", func() { r.Counter("x_total", "x", "a").With("1").Add(-1) })
	mustPanic(t, "unsorted buckets", func() { r.Histogram("h2", "h", []float64{2, 1}) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

// Updates from many goroutines add up exactly, with scrapes in between.
func TestConcurrentUpdates(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "c", "worker")
	h := r.Histogram("h_seconds", "h", nil)
	g := r.Gauge("g", "g")
	var wg sync.WaitGroup
	const workers, n = 8, 2000
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := c.With(fmt.Sprint(w % 2))
			for range n {
				mine.Inc()
				h.With().Observe(0.001)
				g.With().Add(1)
				g.With().Add(-1)
			}
		}()
	}
	for range 10 {
		r.WriteText(&bytes.Buffer{})
	}
	wg.Wait()
	if got := c.With("0").Value() + c.With("1").Value(); got != workers*n {
		t.Errorf("counters sum to %v, want %d", got, workers*n)
	}
	if got := h.With().Count(); got != workers*n {
		t.Errorf("histogram count %d, want %d", got, workers*n)
	}
	if got := g.With().Value(); got != 0 {
		t.Errorf("gauge %v, want 0", got)
	}
}

func BenchmarkCounterInc(b *testing.B) {
	c := NewRegistry().Counter("c_total", "c", "outcome").With("delivered")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

// A labelled lookup per update, as for per-plugin latencies.
func BenchmarkHistogramWithObserve(b *testing.B) {
	h := NewRegistry().Histogram("h_seconds", "h", nil, "plugin", "stage")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.With("router", "rcpt").Observe(0.00002)
		}
	})
}

func BenchmarkWriteText(b *testing.B) {
	r := NewRegistry()
	h := r.Histogram("h_seconds", "h", nil, "plugin", "stage")
	for _, p := range []string{"a", "b", "c", "d"} {
		for _, s := range []string{"connect", "helo", "mail", "rcpt", "data", "close"} {
			h.With(p, s).Observe(0.001)
		}
	}
	var buf bytes.Buffer
	b.ResetTimer()
	for b.Loop() {
		buf.Reset()
		r.WriteText(&buf)
	}
}
