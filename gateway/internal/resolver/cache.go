package resolver

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// cache holds answers until they expire, dropping the least recently used
// when full.
type cache struct {
	mu    sync.Mutex
	size  int
	order *list.List // of *entry, most recently used first
	byKey map[key]*list.Element
}

type entry struct {
	key     key
	answer  answer
	expires time.Time
}

func newCache(size int) *cache {
	return &cache{size: size, order: list.New(), byKey: map[key]*list.Element{}}
}

// get returns the unexpired answer for k.
func (c *cache) get(k key, now time.Time) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return answer{}, false
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.byKey, k)
		return answer{}, false
	}
	c.order.MoveToFront(el)
	return e.answer, true
}

// put stores a for k until expires.
func (c *cache) put(k key, a answer, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		el.Value = &entry{k, a, expires}
		c.order.MoveToFront(el)
		return
	}
	c.byKey[k] = c.order.PushFront(&entry{k, a, expires})
	if c.order.Len() > c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byKey, oldest.Value.(*entry).key)
	}
}

// len is how many answers are cached.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// flights makes concurrent lookups of the same question share one query.
type flights struct {
	mu    sync.Mutex
	calls map[key]*call
}

type call struct {
	done   chan struct{}
	answer answer
}

// do runs query for k unless a query for k is already running, and waits for
// its answer or for ctx to end. The query runs on its own goroutine so that
// one caller giving up does not cancel it for the others.
func (f *flights) do(ctx context.Context, k key, query func() answer) (answer, error) {
	f.mu.Lock()
	c, running := f.calls[k]
	if !running {
		c = &call{done: make(chan struct{})}
		f.calls[k] = c
		go func() {
			c.answer = query()
			f.mu.Lock()
			delete(f.calls, k)
			f.mu.Unlock()
			close(c.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.answer, nil
	case <-ctx.Done():
		return answer{}, ctx.Err()
	}
}
