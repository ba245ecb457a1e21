// Package kvtest is the contract of plugin.KV as tests: every store (the
// gateway's memory, Redis) runs Run, so that plugins see the same
// semantics whichever store the gateway uses. TTLs are real time, short
// enough to wait out, long enough for a loaded machine.
package kvtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// short is a TTL the tests wait out; long one that does not pass during a
// test.
const (
	short = 300 * time.Millisecond
	long  = time.Hour
)

// Run runs the contract against stores from newKV, a fresh empty store
// for each subtest.
func Run(t *testing.T, newKV func(t testing.TB) plugin.KV) {
	t.Run("GetSetDelete", func(t *testing.T) { getSetDelete(t, newKV(t)) })
	t.Run("Scopes", func(t *testing.T) { scopes(t, newKV(t)) })
	t.Run("Expiry", func(t *testing.T) { expiry(t, newKV(t)) })
	t.Run("Incr", func(t *testing.T) { incr(t, newKV(t)) })
	t.Run("IncrExpiry", func(t *testing.T) { incrExpiry(t, newKV(t)) })
	t.Run("IncrConcurrent", func(t *testing.T) { incrConcurrent(t, newKV(t)) })
}

var ctx = context.Background()

// want checks that key holds value (found) or nothing (value nil).
func want(t *testing.T, kv plugin.KV, scope, key string, value []byte) {
	t.Helper()
	v, ok, err := kv.Get(ctx, scope, key)
	switch {
	case err != nil:
		t.Fatalf("Get %s %s: %v", scope, key, err)
	case value == nil && ok:
		t.Errorf("Get %s %s = %q, want nothing", scope, key, v)
	case value != nil && (!ok || string(v) != string(value)):
		t.Errorf("Get %s %s = %q, %v; want %q", scope, key, v, ok, value)
	}
}

func set(t *testing.T, kv plugin.KV, scope, key, value string, ttl time.Duration) {
	t.Helper()
	if err := kv.Set(ctx, scope, key, []byte(value), ttl); err != nil {
		t.Fatalf("Set %s %s: %v", scope, key, err)
	}
}

func incrWant(t *testing.T, kv plugin.KV, scope, key string, delta int64, ttl time.Duration, want int64) {
	t.Helper()
	n, err := kv.Incr(ctx, scope, key, delta, ttl)
	if err != nil || n != want {
		t.Errorf("Incr %s %s %d = %d, %v; want %d", scope, key, delta, n, err, want)
	}
}

func getSetDelete(t *testing.T, kv plugin.KV) {
	want(t, kv, "a", "k", nil)
	value := []byte("hello")
	if err := kv.Set(ctx, "a", "k", value, long); err != nil {
		t.Fatal(err)
	}
	value[0] = 'j' // Set keeps a copy
	want(t, kv, "a", "k", []byte("hello"))
	set(t, kv, "a", "k", "again", long)
	want(t, kv, "a", "k", []byte("again"))
	// Values are bytes, any of them, and may be empty.
	set(t, kv, "a", "bin", "\x00\xff\r\n", long)
	want(t, kv, "a", "bin", []byte("\x00\xff\r\n"))
	set(t, kv, "a", "empty", "", long)
	want(t, kv, "a", "empty", []byte{})
	// The largest value a plugin may store, every byte value in it (NUL,
	// and sequences that are not UTF-8).
	big := make([]byte, abi.MaxKVValue)
	for i := range big {
		big[i] = byte(i * 7)
	}
	set(t, kv, "a", "big", string(big), long)
	want(t, kv, "a", "big", big)
	// Keys are bytes too: spaces, colons, braces (a Redis Cluster hash
	// tag), non-ASCII, not UTF-8, and as long as a plugin's may be.
	for _, k := range []string{"x:y {z} é", "{a}", "{}", "}{", "\x00\xff\xfe:", strings.Repeat("\xc3", abi.MaxKVKey)} {
		set(t, kv, "a", k, "odd "+k, long)
		want(t, kv, "a", k, []byte("odd "+k))
	}
	want(t, kv, "a", "x:y {z} \xc3", nil)
	if err := kv.Delete(ctx, "a", "k"); err != nil {
		t.Fatal(err)
	}
	want(t, kv, "a", "k", nil)
	// Deleting what is not there is fine.
	if err := kv.Delete(ctx, "a", "k"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
}

// scopes: plugins neither see nor change each other's keys, even where
// scope and key joined would read the same.
func scopes(t *testing.T, kv plugin.KV) {
	set(t, kv, "a", "k", "of a", long)
	want(t, kv, "b", "k", nil)
	set(t, kv, "b", "k", "of b", long)
	want(t, kv, "a", "k", []byte("of a"))
	want(t, kv, "b", "k", []byte("of b"))
	if err := kv.Delete(ctx, "b", "k"); err != nil {
		t.Fatal(err)
	}
	want(t, kv, "a", "k", []byte("of a"))
	incrWant(t, kv, "b", "n", 5, long, 5)
	want(t, kv, "a", "n", nil)
}

func expiry(t *testing.T, kv plugin.KV) {
	set(t, kv, "a", "short", "v", short)
	set(t, kv, "a", "long", "v", long)
	want(t, kv, "a", "short", []byte("v"))
	time.Sleep(short + 100*time.Millisecond)
	want(t, kv, "a", "short", nil)
	want(t, kv, "a", "long", []byte("v"))
	// Set replaces the expiry as well as the value.
	set(t, kv, "a", "long", "w", short)
	time.Sleep(short + 100*time.Millisecond)
	want(t, kv, "a", "long", nil)
}

func incr(t *testing.T, kv plugin.KV) {
	incrWant(t, kv, "a", "n", 1, long, 1) // a missing key starts at 0
	incrWant(t, kv, "a", "n", 41, long, 42)
	want(t, kv, "a", "n", []byte("42")) // in decimal, as Get reads it
	incrWant(t, kv, "a", "n", -50, long, -8)
	incrWant(t, kv, "a", "n", 0, long, -8)
	// Set can reset a counter, with FormatInt's text.
	set(t, kv, "a", "n", strconv.FormatInt(-3, 10), long)
	incrWant(t, kv, "a", "n", 1, long, -2)
	// Set can replace a counter with what is no counter; Delete forgets
	// it, and the next Incr starts again at 0.
	set(t, kv, "a", "n", "text", long)
	if n, err := kv.Incr(ctx, "a", "n", 1, long); !errors.Is(err, plugin.ErrKVNotCounter) {
		t.Errorf("Incr of a counter Set replaced = %d, %v; want ErrKVNotCounter", n, err)
	}
	if err := kv.Delete(ctx, "a", "n"); err != nil {
		t.Fatal(err)
	}
	incrWant(t, kv, "a", "n", 7, long, 7)
	// The extremes are counters.
	set(t, kv, "a", "max", strconv.FormatInt(1<<63-1, 10), long)
	incrWant(t, kv, "a", "max", 0, long, 1<<63-1)
	incrWant(t, kv, "a", "min", -1<<63, long, -1<<63)

	// What is not a whole number in FormatInt's decimal is no counter,
	// and stays as it is.
	for _, v := range []string{"hello", "", "1.5", " 1", "1 ", "+1", "01", "-0", "0x10", "99999999999999999999"} {
		set(t, kv, "a", "text", v, long)
		if n, err := kv.Incr(ctx, "a", "text", 1, long); !errors.Is(err, plugin.ErrKVNotCounter) {
			t.Errorf("Incr of %q = %d, %v; want ErrKVNotCounter", v, n, err)
		}
		want(t, kv, "a", "text", []byte(v))
	}

	// A sum beyond int64 is refused, and the value stays.
	set(t, kv, "a", "big", strconv.FormatInt(1<<63-1, 10), long)
	if n, err := kv.Incr(ctx, "a", "big", 1, long); !errors.Is(err, plugin.ErrKVOverflow) {
		t.Errorf("Incr over MaxInt64 = %d, %v; want ErrKVOverflow", n, err)
	}
	want(t, kv, "a", "big", []byte(strconv.FormatInt(1<<63-1, 10)))
	incrWant(t, kv, "a", "big", -1, long, 1<<63-2)
	set(t, kv, "a", "small", strconv.FormatInt(-1<<63, 10), long)
	if n, err := kv.Incr(ctx, "a", "small", -1, long); !errors.Is(err, plugin.ErrKVOverflow) {
		t.Errorf("Incr under MinInt64 = %d, %v; want ErrKVOverflow", n, err)
	}
}

// incrExpiry: a counter's TTL counts from its creation, so that a counter
// counts one fixed window; adding does not move it.
func incrExpiry(t *testing.T, kv plugin.KV) {
	incrWant(t, kv, "a", "n", 1, short, 1)
	incrWant(t, kv, "a", "n", 1, long, 2) // keeps the short expiry
	time.Sleep(short + 100*time.Millisecond)
	want(t, kv, "a", "n", nil)
	incrWant(t, kv, "a", "n", 1, short, 1) // expired: a new window
	// A counter made by Set has Set's expiry.
	set(t, kv, "a", "m", "5", short)
	incrWant(t, kv, "a", "m", 1, long, 6)
	time.Sleep(short + 100*time.Millisecond)
	want(t, kv, "a", "m", nil)
}

// incrConcurrent: no increment is lost when callers add at once.
func incrConcurrent(t *testing.T, kv plugin.KV) {
	const callers, each = 16, 200
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				if _, err := kv.Incr(ctx, "a", "hits", 1, long); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	want(t, kv, "a", "hits", []byte(fmt.Sprint(callers*each)))
}
