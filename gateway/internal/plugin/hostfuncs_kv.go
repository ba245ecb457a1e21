package plugin

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero/api"
)

// KV is the store behind the kv host functions. Every key lives in a
// scope, the plugin's name, so that plugins neither see nor overwrite each
// other's keys. The gateway uses a MemoryKV, or with [cluster] redis a
// rediskv.KV shared by several gateway nodes; the contract below is
// tested against both (package kvtest). Implementations must be
// safe for concurrent use, and the bytes Get returns must not be changed;
// one that can block must end its calls by CallDeadline(ctx).
type KV interface {
	// Get returns the value under key, and false if there is none or it
	// has expired.
	Get(ctx context.Context, scope, key string) ([]byte, bool, error)
	// Set stores a copy of value under key until ttl has passed. It
	// returns ErrKVFull when the scope has no room left.
	Set(ctx context.Context, scope, key string, value []byte, ttl time.Duration) error
	// Delete removes key; a key that is not there is no error.
	Delete(ctx context.Context, scope, key string) error
	// Incr adds delta to the counter under key, atomically, and returns
	// the new value. A counter is a value in decimal, as Set would store
	// strconv.FormatInt's text, so Get reads it and Set can reset it. A
	// key that is not there or has expired starts at 0 and is created
	// with ttl; an existing key keeps its expiry, so a counter created
	// with a window's length counts one fixed window. A value that is not
	// such a number is ErrKVNotCounter, a sum beyond int64 is
	// ErrKVOverflow (the value stays), and no room is ErrKVFull. (Redis
	// does the same in one script: INCRBY, then PEXPIRE when PTTL says
	// the key has no expiry.)
	Incr(ctx context.Context, scope, key string, delta int64, ttl time.Duration) (int64, error)
}

// ErrKVFull is a KV's answer to a Set or Incr that would take a scope over
// its share.
var ErrKVFull = errors.New("the plugin's key-value store is full")

// Errors of Incr about the value under the key.
var (
	ErrKVNotCounter = errors.New("the value is not a whole number in decimal")
	ErrKVOverflow   = errors.New("the counter would overflow 64 bits")
)

// MemoryKVConfig configures a MemoryKV.
type MemoryKVConfig struct {
	// MaxBytes bounds each scope: the lengths of its keys and values, plus
	// kvEntryOverhead per entry. 0 means DefaultKVBytes.
	MaxBytes int
	// Now is the clock that expires entries; nil means time.Now.
	Now func() time.Time
}

// DefaultKVBytes is a MemoryKV scope's default size.
const DefaultKVBytes = 16 << 20

// kvEntryOverhead is what one entry costs beyond its key and value, so
// that many tiny entries count for what they take.
const kvEntryOverhead = 64

// MemoryKV is a KV in the gateway's memory: fast, lost on restart, and
// private to one gateway process.
type MemoryKV struct {
	max int
	now func() time.Time

	mu     sync.Mutex
	scopes map[string]*kvScope
}

type kvScope struct {
	entries map[string]kvEntry
	bytes   int
}

type kvEntry struct {
	value   []byte
	expires time.Time
}

func (e kvEntry) size(key string) int { return len(key) + len(e.value) + kvEntryOverhead }

// NewMemoryKV returns an empty store.
func NewMemoryKV(c MemoryKVConfig) *MemoryKV {
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultKVBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &MemoryKV{max: c.MaxBytes, now: c.Now, scopes: map[string]*kvScope{}}
}

// Get implements KV. An expired entry is removed when it is found.
func (m *MemoryKV) Get(_ context.Context, scope, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.scopes[scope]
	if s == nil {
		return nil, false, nil
	}
	e, ok := s.entries[key]
	if !ok {
		return nil, false, nil
	}
	if !m.now().Before(e.expires) {
		s.remove(key)
		return nil, false, nil
	}
	return e.value, true, nil
}

// Set implements KV.
func (m *MemoryKV) Set(_ context.Context, scope, key string, value []byte, ttl time.Duration) error {
	now := m.now()
	e := kvEntry{value: append([]byte(nil), value...), expires: now.Add(ttl)}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.scope(scope).put(key, e, now, m.max)
}

// Incr implements KV.
func (m *MemoryKV) Incr(_ context.Context, scope, key string, delta int64, ttl time.Duration) (int64, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.scope(scope)
	var n int64
	e, ok := s.entries[key]
	if ok && now.Before(e.expires) {
		var ok bool
		if n, ok = counter(e.value); !ok {
			return 0, ErrKVNotCounter
		}
	} else {
		e.expires = now.Add(ttl)
	}
	sum := n + delta
	if (delta > 0 && sum < n) || (delta < 0 && sum > n) {
		return 0, ErrKVOverflow
	}
	e.value = strconv.AppendInt(nil, sum, 10)
	if err := s.put(key, e, now, m.max); err != nil {
		return 0, err
	}
	return sum, nil
}

// counter reads a counter's value: only FormatInt's text, which is also
// what Redis's INCRBY takes, so that "+1", "01" or "-0" are no counter in
// either store.
func counter(v []byte) (int64, bool) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil && strconv.FormatInt(n, 10) == string(v)
}

// scope returns the entries of a scope, made on first use. m.mu is held.
func (m *MemoryKV) scope(name string) *kvScope {
	s := m.scopes[name]
	if s == nil {
		s = &kvScope{entries: map[string]kvEntry{}}
		m.scopes[name] = s
	}
	return s
}

// put stores e under key. When the scope is full it first drops the
// entries that have expired; if there is still no room, the new entry is
// refused rather than an older one evicted, so that what a plugin stored
// stays until its TTL.
func (s *kvScope) put(key string, e kvEntry, now time.Time, max int) error {
	// need is what storing e takes beyond what the old entry under key
	// takes, if there is one.
	need := func() int {
		n := e.size(key)
		if old, ok := s.entries[key]; ok {
			n -= old.size(key)
		}
		return n
	}
	if s.bytes+need() > max {
		s.sweep(now)
		if s.bytes+need() > max {
			return ErrKVFull
		}
	}
	s.remove(key)
	s.entries[key] = e
	s.bytes += e.size(key)
	return nil
}

// Delete implements KV.
func (m *MemoryKV) Delete(_ context.Context, scope, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.scopes[scope]; s != nil {
		s.remove(key)
	}
	return nil
}

func (s *kvScope) remove(key string) {
	if e, ok := s.entries[key]; ok {
		s.bytes -= e.size(key)
		delete(s.entries, key)
	}
}

// sweep drops every expired entry.
func (s *kvScope) sweep(now time.Time) {
	for k, e := range s.entries {
		if !now.Before(e.expires) {
			s.remove(k)
		}
	}
}

// kvKey reads a key argument and checks its length.
func kvKey(mod api.Module, ptr, n uint64) (string, int32) {
	b, ok := guestBytes(mod, ptr, n)
	if !ok {
		return "", abi.ErrMemory
	}
	if len(b) == 0 || len(b) > abi.MaxKVKey {
		return "", abi.ErrInvalid
	}
	return string(b), 0
}

// CallDeadline is when the plugin call that ctx belongs to must have its
// host calls done: three quarters of the plugin's timeout, so that a
// plugin whose store hangs still answers, with its failure policy. A KV
// that can block (rediskv) ends its calls by it as well as by its own
// timeout, since the guest's interrupt cannot stop a call while a host
// function waits. ok is false outside a plugin call.
func CallDeadline(ctx context.Context) (deadline time.Time, ok bool) {
	if c := callOf(ctx); c != nil {
		return c.deadline, true
	}
	return time.Time{}, false
}

// kvGet is (key_ptr, key_len, buf_ptr, buf_cap) → length of the value.
func (h *hostFuncs) kvGet(ctx context.Context, mod api.Module, stack []uint64) {
	key, code := kvKey(mod, stack[0], stack[1])
	if code < 0 {
		ret(stack, code)
		return
	}
	v, ok, err := h.kv.Get(ctx, h.plugin, key)
	switch {
	case err != nil:
		h.kvFailed("get", err)
		ret(stack, abi.ErrTemporary)
	case !ok:
		ret(stack, abi.ErrNotFound)
	default:
		ret(stack, answer(mod, stack[2], stack[3], v))
	}
}

// kvSet is (key_ptr, key_len, val_ptr, val_len, ttl_ms) → 0.
func (h *hostFuncs) kvSet(ctx context.Context, mod api.Module, stack []uint64) {
	key, code := kvKey(mod, stack[0], stack[1])
	if code < 0 {
		ret(stack, code)
		return
	}
	value, ok := guestBytes(mod, stack[2], stack[3])
	if !ok {
		ret(stack, abi.ErrMemory)
		return
	}
	ttl := int64(stack[4])
	if len(value) > abi.MaxKVValue || ttl <= 0 || ttl > maxKVTTL.Milliseconds() {
		ret(stack, abi.ErrInvalid)
		return
	}
	err := h.kv.Set(ctx, h.plugin, key, value, time.Duration(ttl)*time.Millisecond)
	switch {
	case errors.Is(err, ErrKVFull):
		ret(stack, abi.ErrFull)
	case err != nil:
		h.kvFailed("set", err)
		ret(stack, abi.ErrTemporary)
	default:
		ret(stack, 0)
	}
}

// kvIncr is (key_ptr, key_len, delta i64, ttl_ms i64, out_ptr) → 0, with
// the new value written at out_ptr as 8 bytes, little-endian: an i32 result
// cannot carry a 64-bit counter beside the error codes.
func (h *hostFuncs) kvIncr(ctx context.Context, mod api.Module, stack []uint64) {
	key, code := kvKey(mod, stack[0], stack[1])
	if code < 0 {
		ret(stack, code)
		return
	}
	delta, ttl := int64(stack[2]), int64(stack[3])
	out, ok := guestBytes(mod, stack[4], 8)
	if !ok {
		ret(stack, abi.ErrMemory)
		return
	}
	if ttl <= 0 || ttl > maxKVTTL.Milliseconds() {
		ret(stack, abi.ErrInvalid)
		return
	}
	n, err := h.kv.Incr(ctx, h.plugin, key, delta, time.Duration(ttl)*time.Millisecond)
	switch {
	case errors.Is(err, ErrKVFull):
		ret(stack, abi.ErrFull)
	case errors.Is(err, ErrKVNotCounter), errors.Is(err, ErrKVOverflow):
		ret(stack, abi.ErrInvalid)
	case err != nil:
		h.kvFailed("incr", err)
		ret(stack, abi.ErrTemporary)
	default:
		binary.LittleEndian.PutUint64(out, uint64(n))
		ret(stack, 0)
	}
}

// KVLogEvery is how often a failing store is logged: while Redis is down
// every call fails alike, and each is already counted (by the store's and
// the caller's metrics), so one line in this time, with how many calls
// failed meanwhile, says the rest; a line for each would let anyone fill
// the log.
const KVLogEvery = 10 * time.Second

// KVFailureLog bounds the lines of a failing store to one in KVLogEvery.
// Its zero value is ready.
type KVFailureLog struct {
	mu     sync.Mutex
	last   time.Time
	missed int // failures not logged since last
}

// Due reports whether a failure at now is to be logged, and if so how
// many were not since the last line.
func (l *KVFailureLog) Due(now time.Time) (missed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < KVLogEvery {
		l.missed++
		return 0, false
	}
	missed = l.missed
	l.last, l.missed = now, 0
	return missed, true
}

// kvFailed logs a call of the store that failed, at most once in
// KVLogEvery for the plugin.
func (h *hostFuncs) kvFailed(op string, err error) {
	if missed, ok := h.kvLog.Due(time.Now()); ok {
		h.logger.Warn("key-value store failed", "op", op, "error", err, "failures_not_logged", missed)
	}
}

// maxKVTTL keeps a TTL's arithmetic far from overflow; a year is longer
// than any cache entry needs.
const maxKVTTL = 366 * 24 * time.Hour

// kvDelete is (key_ptr, key_len) → 0.
func (h *hostFuncs) kvDelete(ctx context.Context, mod api.Module, stack []uint64) {
	key, code := kvKey(mod, stack[0], stack[1])
	if code < 0 {
		ret(stack, code)
		return
	}
	if err := h.kv.Delete(ctx, h.plugin, key); err != nil {
		h.kvFailed("delete", err)
		ret(stack, abi.ErrTemporary)
		return
	}
	ret(stack, 0)
}
