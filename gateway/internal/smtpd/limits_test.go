package smtpd

import (
	"testing"
	"time"
)

// The sampler lets one event through per interval, and the next one
// through says how many it held back.
func TestSampler(t *testing.T) {
	s := &sampler{every: 10 * time.Second}
	t0 := time.Unix(1_000_000, 0)
	steps := []struct {
		at       time.Duration
		ok       bool
		held     int
		scenario string
	}{
		{0, true, 0, "the first event"},
		{time.Second, false, 0, "one second later"},
		{9 * time.Second, false, 0, "still within the interval"},
		{10 * time.Second, true, 2, "at the interval's end: the two held back"},
		{11 * time.Second, false, 0, "within the next interval"},
		{time.Hour, true, 1, "long after"},
		{time.Hour + 10*time.Second, true, 0, "the next interval, nothing held"},
	}
	for _, st := range steps {
		if ok, held := s.allow(t0.Add(st.at)); ok != st.ok || held != st.held {
			t.Errorf("%s: allow = %v, %d; want %v, %d", st.scenario, ok, held, st.ok, st.held)
		}
	}
}
