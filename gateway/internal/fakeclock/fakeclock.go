// Package fakeclock is a clock that tests set and move by hand, for the
// Now fields by which packages take their time (docs/DESIGN.md: clocks
// tests must control are fields).
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only when told; safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New is a Clock at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time: a Now field's value.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock d on.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set puts the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}
