package queue

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := testOptions
	opts.Metrics = NewMetrics(reg)
	d := startDestination(t)
	c := fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	opts.Now = c.Now
	q := openTest(t, t.TempDir(), opts)
	held, sent := testMessage("a@example.net"), testMessage("b@example.com", "c@example.com")
	for _, m := range []*Message{held, sent} {
		if err := q.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Hold(context.Background(), held.ID); err != nil {
		t.Fatal(err)
	}
	c.Advance(90 * time.Second)
	want := map[string]float64{
		"sluice_queue_bytes":                                 float64(len(held.Data) + len(sent.Data)),
		"sluice_queue_oldest_seconds":                        90,
		`sluice_queue_messages{held="false",kind="forward"}`: 1,
		`sluice_queue_messages{held="true",kind="forward"}`:  1,
		`sluice_queue_messages{held="true",kind="dsn"}`:      0,
		`sluice_queue_attempts_total{result="delivered"}`:    0,
	}
	check := func() {
		t.Helper()
		got := gathered(t, reg)
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s = %v (served: %v), want %v", k, g, ok, v)
			}
		}
	}
	check()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx, smtpDeliverer{d.addr}, &recorder{}); close(done) }()
	defer func() { cancel(); <-done }()
	eventually(t, "the message to go", func() bool { l, _ := q.List(context.Background()); return len(l) == 1 })
	want["sluice_queue_attempts_total{result=\"delivered\"}"] = 2
	want["sluice_queue_bytes"] = float64(len(held.Data))
	want[`sluice_queue_messages{held="false",kind="forward"}`] = 0
	check()
}

// gathered is every series of reg by name{labels}, labels sorted.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			name := f.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[name] = v
		}
	}
	return out
}
