package activity

// STAND-IN for i13-store's definitions, so that the console builds and
// tests before the store lands. Delete this file when merging i13-store.

import (
	"errors"
	"time"
)

// ErrNotFound is Get's error for an ID the store does not hold.
var ErrNotFound = errors.New("activity: no such transaction")

// Bucket counts the transactions that ended in [Start, Start+step), by
// outcome.
type Bucket struct {
	Start  time.Time      `json:"start"`
	Counts map[string]int `json:"counts"`
}
