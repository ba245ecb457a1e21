// Package metrics keeps the gateway's counters, gauges and histograms and
// writes them in the Prometheus text exposition format, version 0.0.4.
//
// It is deliberately small: families of one type with fixed label names,
// children made on first use of a set of label values, lock-free updates.
// Updates happen on the mail path; writing happens when a scraper asks.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the HTTP Content-Type of what WriteText writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Registry holds metric families. It is safe for concurrent use.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{families: map[string]*family{}} }

type kind string

const (
	counterKind   kind = "counter"
	gaugeKind     kind = "gauge"
	histogramKind kind = "histogram"
)

// family is one metric name: its help, type, label names and children.
type family struct {
	name    string
	help    string
	kind    kind
	labels  []string
	buckets []float64 // histograms only

	mu       sync.RWMutex
	children map[string]*child // by label values joined with labelSep
}

// child is one series of a family (for a histogram, one set of series).
type child struct {
	values []string
	value  atomicFloat // counter, gauge

	// histogram: counts per bucket (not cumulative; the last is +Inf),
	// their sum and the sum of observed values.
	counts []atomic.Uint64
	sum    atomicFloat
}

// labelSep joins label values into a map key; it cannot occur in UTF-8.
const labelSep = "\xff"

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// register returns the family called name, making it on first use. Asking
// for an existing name with another type or labels is a programming error
// and panics, as does an invalid name.
func (r *Registry) register(name, help string, k kind, buckets []float64, labels []string) *family {
	if !metricNameRE.MatchString(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	for _, l := range labels {
		if !labelNameRE.MatchString(l) || strings.HasPrefix(l, "__") || (k == histogramKind && l == "le") {
			panic(fmt.Sprintf("metrics: invalid label name %q for %s", l, name))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.families[name]; ok {
		if f.kind != k || !slices.Equal(f.labels, labels) || !slices.Equal(f.buckets, buckets) {
			panic(fmt.Sprintf("metrics: %s registered again with another type, labels or buckets", name))
		}
		return f
	}
	f := &family{name: name, help: help, kind: k, labels: slices.Clone(labels), buckets: buckets, children: map[string]*child{}}
	r.families[name] = f
	return f
}

// with returns the child for these label values, making it on first use.
func (f *family) with(values []string) *child {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: %s takes %d label values, got %d", f.name, len(f.labels), len(values)))
	}
	key := strings.Join(values, labelSep)
	f.mu.RLock()
	c, ok := f.children[key]
	f.mu.RUnlock()
	if ok {
		return c
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.children[key]; ok {
		return c
	}
	c = &child{values: slices.Clone(values)}
	if f.kind == histogramKind {
		c.counts = make([]atomic.Uint64, len(f.buckets)+1)
	}
	f.children[key] = c
	return c
}

// CounterVec is a family of counters: values that only go up.
type CounterVec struct{ f *family }

// Counter returns the counter family called name with these label names,
// making it on first use.
func (r *Registry) Counter(name, help string, labels ...string) *CounterVec {
	return &CounterVec{r.register(name, help, counterKind, nil, labels)}
}

// With returns the counter for these label values, in the order of the
// family's label names. Keep it if it is used often: the lookup costs a
// map access.
func (v *CounterVec) With(values ...string) *Counter { return &Counter{v.f.with(values)} }

// Counter is one counter series.
type Counter struct{ c *child }

// Inc adds one.
func (c *Counter) Inc() { c.c.value.add(1) }

// Add adds d, which must not be negative: counters only go up.
func (c *Counter) Add(d float64) {
	if d < 0 {
		panic("metrics: counter decreased")
	}
	c.c.value.add(d)
}

// Value returns the current value.
func (c *Counter) Value() float64 { return c.c.value.load() }

// GaugeVec is a family of gauges: values that go up and down.
type GaugeVec struct{ f *family }

// Gauge returns the gauge family called name, making it on first use.
func (r *Registry) Gauge(name, help string, labels ...string) *GaugeVec {
	return &GaugeVec{r.register(name, help, gaugeKind, nil, labels)}
}

// With returns the gauge for these label values.
func (v *GaugeVec) With(values ...string) *Gauge { return &Gauge{v.f.with(values)} }

// Gauge is one gauge series.
type Gauge struct{ c *child }

// Set sets the value.
func (g *Gauge) Set(x float64) { g.c.value.store(x) }

// Add adds d, which may be negative.
func (g *Gauge) Add(d float64) { g.c.value.add(d) }

// Value returns the current value.
func (g *Gauge) Value() float64 { return g.c.value.load() }

// HistogramVec is a family of histograms.
type HistogramVec struct{ f *family }

// DefaultBuckets are upper bounds in seconds for latencies from 50 µs to
// 10 s: a plugin call is tens of microseconds, a relayed message seconds.
var DefaultBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Histogram returns the histogram family called name, with these bucket
// upper bounds (ascending; nil means DefaultBuckets), making it on first
// use.
func (r *Registry) Histogram(name, help string, buckets []float64, labels ...string) *HistogramVec {
	if buckets == nil {
		buckets = DefaultBuckets
	}
	if !slices.IsSorted(buckets) || slices.Contains(buckets, math.Inf(1)) {
		panic(fmt.Sprintf("metrics: %s: buckets must ascend and leave out +Inf", name))
	}
	return &HistogramVec{r.register(name, help, histogramKind, buckets, labels)}
}

// With returns the histogram for these label values.
func (v *HistogramVec) With(values ...string) *Histogram {
	return &Histogram{c: v.f.with(values), buckets: v.f.buckets}
}

// Histogram is one histogram.
type Histogram struct {
	c       *child
	buckets []float64
}

// Observe counts one value, such as a duration in seconds.
func (h *Histogram) Observe(x float64) {
	i, _ := slices.BinarySearch(h.buckets, x) // the first bound ≥ x, or +Inf
	h.c.counts[i].Add(1)
	h.c.sum.add(x)
}

// Count returns how many values were observed.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.c.counts {
		n += h.c.counts[i].Load()
	}
	return n
}

// atomicFloat is a float64 updated without locks.
type atomicFloat struct{ bits atomic.Uint64 }

func (a *atomicFloat) load() float64   { return math.Float64frombits(a.bits.Load()) }
func (a *atomicFloat) store(x float64) { a.bits.Store(math.Float64bits(x)) }

func (a *atomicFloat) add(d float64) {
	for {
		old := a.bits.Load()
		if a.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// WriteText writes every family, sorted by name, with its series sorted by
// label values, in the Prometheus text format 0.0.4. A family without
// labels always has its one series; a labelled family shows the label
// values used so far.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	families := make([]*family, 0, len(r.families))
	for _, f := range r.families {
		families = append(families, f)
	}
	r.mu.Unlock()
	slices.SortFunc(families, func(a, b *family) int { return strings.Compare(a.name, b.name) })

	bw := bufio.NewWriter(w)
	for _, f := range families {
		f.write(bw)
	}
	return bw.Flush()
}

func (f *family) write(w *bufio.Writer) {
	if len(f.labels) == 0 {
		f.with(nil)
	}
	f.mu.RLock()
	children := make([]*child, 0, len(f.children))
	for _, c := range f.children {
		children = append(children, c)
	}
	f.mu.RUnlock()
	slices.SortFunc(children, func(a, b *child) int { return slices.Compare(a.values, b.values) })

	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.kind)
	for _, c := range children {
		if f.kind != histogramKind {
			writeSample(w, f.name, f.labels, c.values, "", c.value.load())
			continue
		}
		var cumulative uint64
		for i := range c.counts {
			cumulative += c.counts[i].Load()
			le := "+Inf"
			if i < len(f.buckets) {
				le = formatFloat(f.buckets[i])
			}
			writeSample(w, f.name+"_bucket", f.labels, c.values, le, float64(cumulative))
		}
		writeSample(w, f.name+"_sum", f.labels, c.values, "", c.sum.load())
		// The count is the +Inf bucket, so the two always agree even while
		// observations land during the write.
		writeSample(w, f.name+"_count", f.labels, c.values, "", float64(cumulative))
	}
}

// writeSample writes one line: name{labels} value. le, if not empty, is a
// histogram bucket's bound, written as the last label.
func writeSample(w *bufio.Writer, name string, labels, values []string, le string, v float64) {
	w.WriteString(name)
	if len(labels) > 0 || le != "" {
		w.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(l)
			w.WriteString(`="`)
			w.WriteString(escapeLabel(values[i]))
			w.WriteByte('"')
		}
		if le != "" {
			if len(labels) > 0 {
				w.WriteByte(',')
			}
			w.WriteString(`le="`)
			w.WriteString(le)
			w.WriteByte('"')
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }
