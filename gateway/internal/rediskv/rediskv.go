// Package rediskv is the plugins' key-value store (plugin.KV) in Redis or
// Valkey, so that every gateway node of a cluster shares one: a rate
// limit counts a sender's mail on all nodes, a greylisted retry passes on
// any node.
//
// A key is Prefix + scope + ":" + key, the scope being the plugin's name:
// with the default prefix, the ratelimit plugin's counter "s:a@b.test"
// is the Redis key "sluice:ratelimit:s:a@b.test" (redis-cli --scan
// --pattern 'sluice:ratelimit:*' lists them). Every key is written with
// an expiry, so nothing is kept forever.
//
// The client is valkey-go (RATIONALE.md says why). It connects on the
// first call, not in New, so that the gateway starts while Redis is down
// and uses it once it is up; after that it reconnects by itself. Every
// call is bounded by Config.Timeout: a Redis that is down, slow or hung
// makes calls fail at their deadline, and the host functions turn the
// failure into abi.ErrTemporary for the plugin, whose failure policy
// decides.
package rediskv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/valkey-io/valkey-go"
)

// Config says where Redis is and how to talk to it.
type Config struct {
	// Addrs are host:port of Redis: one server, any nodes of a Redis
	// Cluster (found out by asking), or the Sentinels with
	// SentinelMaster.
	Addrs []string
	// SentinelMaster is the master's name the Sentinels at Addrs
	// monitor; empty means no Sentinel.
	SentinelMaster string
	// Username and Password log in (ACL user, or just the password for
	// requirepass); both may be empty.
	Username, Password string
	// SentinelUsername and SentinelPassword log in to the Sentinels,
	// which have users of their own (a Sentinel does not know the
	// master's ACL users); both may be empty.
	SentinelUsername, SentinelPassword string
	// DB is the database number (SELECT); a Redis Cluster has only 0.
	DB int
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// Prefix begins every key.
	Prefix string
	// Timeout bounds each call; 0 means DefaultTimeout.
	Timeout time.Duration
	// Metrics, when set, count the calls.
	Metrics *Metrics
}

// DefaultTimeout bounds a call when Config.Timeout is 0.
const DefaultTimeout = 200 * time.Millisecond

// KV is a plugin.KV in Redis. It is safe for concurrent use.
type KV struct {
	cfg    Config
	option valkey.ClientOption

	mu      sync.Mutex
	client  valkey.Client // nil until the first connection succeeds
	dialing chan struct{} // closed when the connection attempt in flight ends; nil when none is
	dialErr error         // of the last attempt that failed
	closed  bool
}

var _ plugin.KV = (*KV)(nil)

// New checks the configuration and returns a store; it does not connect.
func New(c Config) (*KV, error) {
	if len(c.Addrs) == 0 {
		return nil, errors.New("rediskv: no Redis address")
	}
	for _, a := range c.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("rediskv: Redis address %q: %v", a, err)
		}
	}
	if c.DB < 0 {
		return nil, fmt.Errorf("rediskv: database %d is negative", c.DB)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	opt := valkey.ClientOption{
		InitAddress: c.Addrs,
		Username:    c.Username,
		Password:    c.Password,
		SelectDB:    c.DB,
		TLSConfig:   c.TLS,
		ClientName:  clientName(),
		Dialer:      net.Dialer{Timeout: c.Timeout},
		// A connection that answers nothing for this long (a hung
		// Redis) is closed and dialled anew; calls do not wait for it,
		// they end at their own deadline.
		ConnWriteTimeout: max(5*c.Timeout, time.Second),
		// Server-assisted client-side caching is off: RATIONALE.md says
		// why.
		DisableCache: true,
	}
	if c.SentinelMaster != "" {
		opt.Sentinel = valkey.SentinelOption{
			MasterSet: c.SentinelMaster, Username: c.SentinelUsername, Password: c.SentinelPassword,
			TLSConfig: c.TLS, Dialer: opt.Dialer,
			// Reconcile with the Sentinels now and then, besides their
			// +switch-master events, so that a missed event does not
			// bind us to an old master.
			TopologyRefreshInterval: 5 * time.Second,
		}
	}
	return &KV{cfg: c, option: opt}, nil
}

// clientName names our connections in CLIENT LIST: sluice@host.
func clientName() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return '_'
		}
		return r
	}, h)
	return "sluice@" + h
}

// Close closes the connections; calls after it fail.
func (k *KV) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	if k.client != nil {
		k.client.Close()
	}
}

// Ping asks Redis whether it answers, within the timeout.
func (k *KV) Ping(ctx context.Context) error {
	return opError("ping", k.do(ctx, "ping", func(ctx context.Context, c valkey.Client) error {
		return c.Do(ctx, c.B().Ping().Build()).Error()
	}))
}

// errClosed is the error of a call after Close.
var errClosed = errors.New("the store is closed")

// connected returns the client, connecting first if there is none: one
// attempt at a time, which callers wait for until their deadline. An
// attempt that fails is made again by the next call.
func (k *KV) connected(ctx context.Context) (valkey.Client, error) {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil, errClosed
	}
	if k.client != nil {
		c := k.client
		k.mu.Unlock()
		return c, nil
	}
	if k.dialing == nil {
		k.dialing = make(chan struct{})
		go k.dial(k.dialing)
	}
	dialing := k.dialing
	k.mu.Unlock()
	select {
	case <-dialing:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.client == nil {
		return nil, k.dialErr
	}
	return k.client, nil
}

// dial makes the client (valkey.NewClient connects, and fails when it
// cannot), then closes done.
func (k *KV) dial(done chan struct{}) {
	c, err := valkey.NewClient(k.option)
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case err != nil:
		k.dialErr = err
	case k.closed:
		c.Close()
	default:
		k.client = c
	}
	k.dialing = nil
	close(done)
}

// do runs f with the client within the timeout, or by the plugin call's
// deadline if that is sooner, and counts it.
func (k *KV) do(ctx context.Context, op string, f func(context.Context, valkey.Client) error) error {
	start := time.Now()
	deadline := start.Add(k.cfg.Timeout)
	if d, ok := plugin.CallDeadline(ctx); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := k.connected(ctx)
	if err == nil {
		err = f(ctx, c)
	}
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		result = "timeout"
	default:
		result = "error"
	}
	k.cfg.Metrics.observe(op, result, start)
	return err
}

// key is the Redis key of a plugin's key.
func (k *KV) key(scope, key string) string {
	return k.cfg.Prefix + scope + ":" + key
}

// Get implements plugin.KV.
func (k *KV) Get(ctx context.Context, scope, key string) ([]byte, bool, error) {
	var v []byte
	found := true
	err := k.do(ctx, "get", func(ctx context.Context, c valkey.Client) error {
		var err error
		v, err = c.Do(ctx, c.B().Get().Key(k.key(scope, key)).Build()).AsBytes()
		if valkey.IsValkeyNil(err) {
			found, err = false, nil
		}
		return err
	})
	if err != nil {
		return nil, false, opError("get", err)
	}
	return v, found, nil
}

// Set implements plugin.KV.
func (k *KV) Set(ctx context.Context, scope, key string, value []byte, ttl time.Duration) error {
	err := k.do(ctx, "set", func(ctx context.Context, c valkey.Client) error {
		return c.Do(ctx, c.B().Set().Key(k.key(scope, key)).Value(valkey.BinaryString(value)).PxMilliseconds(ms(ttl)).Build()).Error()
	})
	return opError("set", err)
}

// Delete implements plugin.KV.
func (k *KV) Delete(ctx context.Context, scope, key string) error {
	err := k.do(ctx, "delete", func(ctx context.Context, c valkey.Client) error {
		return c.Do(ctx, c.B().Del().Key(k.key(scope, key)).Build()).Error()
	})
	return opError("delete", err)
}

// incrScript adds to a counter and gives a new one its expiry, in one
// round trip and atomically: a key that INCRBY has just created has no
// expiry (PTTL -1), an existing counter keeps its own, so a counter
// counts one fixed window as plugin.KV says. A script rather than MULTI
// with PEXPIRE NX, which needs Redis 7: this runs on Redis 6 too, and an
// INCRBY that fails (not a number, overflow) stops it before PEXPIRE.
// It returns the counter as the text GET reads, not INCRBY's answer:
// Lua holds numbers as doubles, which round counters beyond 2^53.
var incrScript = valkey.NewLuaScript(`redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1])`)

// Incr implements plugin.KV. The script is run by EVALSHA, and sent whole
// (EVAL) only when Redis does not know it yet (NOSCRIPT), as after a
// restart.
func (k *KV) Incr(ctx context.Context, scope, key string, delta int64, ttl time.Duration) (int64, error) {
	var n int64
	err := k.do(ctx, "incr", func(ctx context.Context, c valkey.Client) error {
		v, err := incrScript.Exec(ctx, c, []string{k.key(scope, key)},
			[]string{strconv.FormatInt(delta, 10), strconv.FormatInt(ms(ttl), 10)}).ToString()
		if err != nil {
			return err
		}
		n, err = strconv.ParseInt(v, 10, 64)
		return err
	})
	if err != nil {
		return 0, opError("incr", err)
	}
	return n, nil
}

// ms is a TTL in whole milliseconds, at least 1: the host functions take
// milliseconds, and PX 0 is an error.
func ms(ttl time.Duration) int64 {
	return max(ttl.Milliseconds(), 1)
}

// opError maps Redis's answers to plugin.KV's errors, and names Redis and
// the op in any other.
func opError(op string, err error) error {
	if err == nil {
		return nil
	}
	if e, ok := valkey.IsValkeyErr(err); ok {
		msg := e.Error()
		switch {
		// "OOM command not allowed when used memory > 'maxmemory'"
		case strings.HasPrefix(msg, "OOM ") || strings.Contains(msg, " OOM "):
			return plugin.ErrKVFull
		// INCRBY: "ERR value is not an integer or out of range"
		case strings.Contains(msg, "not an integer"):
			return plugin.ErrKVNotCounter
		// INCRBY: "ERR increment or decrement would overflow"
		case strings.Contains(msg, "would overflow"):
			return plugin.ErrKVOverflow
		}
		// A Redis Cluster answers MOVED only to a client that did not
		// learn its slots: valkey-go falls back to one node when the
		// user may not ask for them.
		if _, moved := e.IsMoved(); moved {
			return fmt.Errorf("redis %s: %w (a Redis Cluster, but the user may not run CLUSTER SLOTS or CLUSTER SHARDS, so only one node is used: grant +cluster|slots +cluster|shards)", op, err)
		}
	}
	return fmt.Errorf("redis %s: %w", op, err)
}
