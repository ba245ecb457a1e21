package login

import (
	"sync"
	"time"
)

// throttle counts failed logins by key (a client IP, a user name): after
// max failures within window, the key waits until the oldest of them is
// older than window.
type throttle struct {
	max    int
	window time.Duration

	mu       sync.Mutex
	failures map[string][]time.Time
}

func newThrottle(max int, window time.Duration) *throttle {
	return &throttle{max: max, window: window, failures: map[string][]time.Time{}}
}

// wait is how long the longest-waiting of keys must still wait; 0 if none.
func (t *throttle) wait(now time.Time, keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var longest time.Duration
	for _, k := range keys {
		f := t.recent(now, k)
		if len(f) >= t.max {
			longest = max(longest, f[len(f)-t.max].Add(t.window).Sub(now))
		}
	}
	return longest
}

// fail counts a failure for each key.
func (t *throttle) fail(now time.Time, keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Keys whose failures are all old go, so guessed names cannot fill
	// memory for longer than window.
	for k := range t.failures {
		t.recent(now, k)
	}
	for _, k := range keys {
		t.failures[k] = append(t.recent(now, k), now)
	}
}

// recent drops k's failures older than window and returns the rest.
func (t *throttle) recent(now time.Time, k string) []time.Time {
	f := t.failures[k]
	i := 0
	for i < len(f) && !now.Before(f[i].Add(t.window)) {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(t.failures, k)
		return nil
	}
	t.failures[k] = f
	return f
}
