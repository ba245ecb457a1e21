package smtpd

import (
	"testing"
	"time"
)

// A forwarded message is counted once in each of the counters whose
// children are kept by label values (messages, recipients, relay replies,
// TLS sessions), in the series of its outcome, and nowhere else.
func TestForwardedMessageCounted(t *testing.T) {
	e := startMulti(t, nil, false)
	for range 2 {
		rcptErrs, _, err := e.send(t, multiMessage, "same@example.test")
		if rcptErrs[0] != nil || err != nil {
			t.Fatalf("RCPT %v, DATA %v", rcptErrs[0], err)
		}
	}
	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"sluice_messages_total", []string{"outcome", "delivered"}, 2},
		{"sluice_messages_total", []string{"outcome", "rejected"}, 0},
		{"sluice_recipients_total", []string{"outcome", "forwarded", "decided_by", "destination"}, 2},
		{"sluice_recipients_total", []string{"outcome", "forwarded", "decided_by", "host"}, 0},
		// Two destinations per message: MAIL once, RCPT twice.
		{"sluice_relay_replies_total", []string{"step", "mail", "class", "2xx"}, 2},
		{"sluice_relay_replies_total", []string{"step", "rcpt", "class", "2xx"}, 4},
		{"sluice_relay_replies_total", []string{"step", "data", "class", "2xx"}, 2},
		{"sluice_relay_replies_total", []string{"step", "data", "class", "4xx"}, 0},
		{"sluice_tls_sessions_total", []string{"direction", "outbound", "version", "none"}, 2},
	}
	for _, w := range want {
		if got := e.counter(t, w.name, w.labels...); got != w.value {
			t.Errorf("%s%q = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
	// The chain ran the router once per message, at RCPT; its failures
	// show, at 0.
	for _, h := range []struct {
		name   string
		labels []string
	}{
		{"sluice_stage_seconds", []string{"stage", "rcpt"}},
		{"sluice_plugin_call_seconds", []string{"plugin", "router", "stage", "rcpt"}},
	} {
		if got := observations(t, e, h.name, h.labels...); got != 2 {
			t.Errorf("%s%q counted %d times, want 2", h.name, h.labels, got)
		}
	}
	if !e.has(t, "sluice_plugin_failures_total", "plugin", "router", "stage", "rcpt") {
		t.Error("no sluice_plugin_failures_total series for router at rcpt, want one at 0")
	}
	// Inbound sessions count when they end, after the client's QUIT.
	deadline := time.Now().Add(5 * time.Second)
	for e.counter(t, "sluice_tls_sessions_total", "direction", "inbound", "version", "none") != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.counter(t, "sluice_tls_sessions_total", "direction", "inbound", "version", "none"); got != 2 {
		t.Errorf("inbound sessions without TLS = %v, want 2", got)
	}
}

// observations is how many values the histogram name with the labels
// (name=value pairs) took, -1 if it has no such series.
func observations(t *testing.T, e *multiEnv, name string, labels ...string) int {
	t.Helper()
	if m := e.series(t, name, labels...); m != nil {
		return int(m.GetHistogram().GetSampleCount())
	}
	return -1
}
