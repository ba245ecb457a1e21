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
	// Inbound sessions count when they end, after the client's QUIT.
	deadline := time.Now().Add(5 * time.Second)
	for e.counter(t, "sluice_tls_sessions_total", "direction", "inbound", "version", "none") != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.counter(t, "sluice_tls_sessions_total", "direction", "inbound", "version", "none"); got != 2 {
		t.Errorf("inbound sessions without TLS = %v, want 2", got)
	}
}
