package rediskv

import (
	"context"
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/plugin/kvtest"
	"github.com/sluice-mail/sluice/gateway/internal/redistest"
)

// newKV is a store on s with the config c (Addrs and Prefix filled in
// when empty), closed when the test ends.
func newKV(t testing.TB, s *redistest.Server, c Config) *KV {
	t.Helper()
	if c.Addrs == nil {
		c.Addrs = []string{s.Addr()}
	}
	if c.Prefix == "" {
		c.Prefix = "sluice:"
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second // a loaded test machine is slow; outage tests set their own
	}
	kv, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kv.Close)
	return kv
}

func TestContract(t *testing.T) {
	s := redistest.Start(t)
	kvtest.Run(t, func(t testing.TB) plugin.KV {
		s.CLI("FLUSHALL")
		return newKV(t, s, Config{})
	})
}

var ctx = context.Background()

// works checks a round of every op on kv.
func works(t *testing.T, kv *KV) {
	t.Helper()
	if err := kv.Set(ctx, "p", "k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if v, ok, err := kv.Get(ctx, "p", "k"); err != nil || !ok || string(v) != "v" {
		t.Fatalf("Get = %q, %v, %v", v, ok, err)
	}
	if _, err := kv.Incr(ctx, "p", "n", 1, time.Minute); err != nil {
		t.Fatalf("Incr: %v", err)
	}
	if err := kv.Delete(ctx, "p", "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// Keys are prefix, scope, ":", key, as the package comment says; two
// prefixes on one Redis are two stores.
func TestKeyLayout(t *testing.T) {
	s := redistest.Start(t)
	a := newKV(t, s, Config{Prefix: "one:"})
	b := newKV(t, s, Config{Prefix: "two:"})
	if err := a.Set(ctx, "ratelimit", "c:127.0.0.1", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Incr(ctx, "greylist", "d:h", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(s.CLI("GET", "one:ratelimit:c:127.0.0.1")); got != "x" {
		t.Errorf("GET one:ratelimit:c:127.0.0.1 = %q", got)
	}
	if ttl, _ := strconv.Atoi(strings.TrimSpace(s.CLI("PTTL", "one:greylist:d:h"))); ttl <= 0 || ttl > 60000 {
		t.Errorf("the counter's PTTL = %d, want its TTL", ttl)
	}
	if _, ok, err := b.Get(ctx, "ratelimit", "c:127.0.0.1"); ok || err != nil {
		t.Errorf("another prefix sees the key: %v, %v", ok, err)
	}
}

// An ACL user logs in with its password; a wrong one is an error that
// says so, naming Redis and the op.
func TestACL(t *testing.T) {
	s := redistest.Start(t, redistest.User("sluice", "right"))
	works(t, newKV(t, s, Config{Username: "sluice", Password: "right"}))
	_, _, err := newKV(t, s, Config{Username: "sluice", Password: "wrong"}).Get(ctx, "p", "k")
	if err == nil || !strings.Contains(err.Error(), "redis get") || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("wrong password: %v", err)
	}
	_, _, err = newKV(t, s, Config{}).Get(ctx, "p", "k")
	if err == nil || !strings.Contains(err.Error(), "redis get") {
		t.Errorf("no login: %v", err)
	}
}

// A password alone is requirepass's, the default user's.
func TestPassword(t *testing.T) {
	s := redistest.Start(t, redistest.Password("pw"))
	works(t, newKV(t, s, Config{Password: "pw"}))
}

func TestTLS(t *testing.T) {
	s := redistest.Start(t, redistest.TLS())
	works(t, newKV(t, s, Config{TLS: &tls.Config{RootCAs: s.CAPool()}}))
	// Not trusting the CA is an error.
	if _, _, err := newKV(t, s, Config{TLS: &tls.Config{}}).Get(ctx, "p", "k"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
}

func TestDB(t *testing.T) {
	s := redistest.Start(t)
	kv := newKV(t, s, Config{DB: 3})
	works(t, kv)
	if err := kv.Set(ctx, "p", "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(s.CLI("-n", "3", "GET", "sluice:p:k")); got != "v" {
		t.Errorf("GET in db 3 = %q", got)
	}
}

func TestSentinel(t *testing.T) {
	m := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, "main", m)
	kv := newKV(t, sentinel, Config{SentinelMaster: "main"})
	works(t, kv)
	if got := strings.TrimSpace(m.CLI("EXISTS", "sluice:p:n")); got != "1" {
		t.Errorf("the counter is not on the master: EXISTS = %q", got)
	}
}

// The Sentinels have users of their own: a master's ACL user is not
// sent to Sentinels that need no login (the usual setup), and Sentinels
// with a password of their own get theirs.
func TestSentinelLogin(t *testing.T) {
	m := redistest.Start(t, redistest.User("sluice", "pw"))
	sentinel := redistest.StartSentinel(t, "main", m)
	works(t, newKV(t, sentinel, Config{SentinelMaster: "main", Username: "sluice", Password: "pw"}))

	sentinel.CLI("ACL", "SETUSER", "default", "resetpass", ">sentinel-pw")
	works(t, newKV(t, sentinel, Config{SentinelMaster: "main", Username: "sluice", Password: "pw", SentinelPassword: "sentinel-pw"}))
	_, _, err := newKV(t, sentinel, Config{SentinelMaster: "main", Username: "sluice", Password: "pw"}).Get(ctx, "p", "k")
	if err == nil || !strings.Contains(err.Error(), "redis get") {
		t.Errorf("Sentinels that need a password, none given: %v", err)
	}
}

// A Redis Cluster: keys of the contract spread over the masters' slots.
func TestCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	kvtest.Run(t, func(t testing.TB) plugin.KV {
		for _, n := range nodes {
			n.CLI("FLUSHALL")
		}
		return newKV(t, nodes[0], Config{})
	})
	// The keys did land on more than one master.
	used := 0
	kv := newKV(t, nodes[1], Config{})
	for i := range 50 {
		if err := kv.Set(ctx, "p", strconv.Itoa(i), []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if strings.TrimSpace(n.CLI("DBSIZE")) != "0" {
			used++
		}
	}
	if used < 2 {
		t.Errorf("keys on %d masters, want them spread", used)
	}
}

// maxmemory reached with noeviction: writes are ErrKVFull, which the
// host functions give the plugin as "full", not as a failure.
func TestFull(t *testing.T) {
	s := redistest.Start(t, redistest.Args("--maxmemory", "1", "--maxmemory-policy", "noeviction"))
	kv := newKV(t, s, Config{})
	if err := kv.Set(ctx, "p", "k", []byte("v"), time.Minute); !errors.Is(err, plugin.ErrKVFull) {
		t.Errorf("Set over maxmemory: %v, want ErrKVFull", err)
	}
	if _, err := kv.Incr(ctx, "p", "n", 1, time.Minute); !errors.Is(err, plugin.ErrKVFull) {
		t.Errorf("Incr over maxmemory: %v, want ErrKVFull", err)
	}
}

// New does not connect: with Redis down the store is made, calls fail
// naming Redis, and once Redis is up the same store works.
func TestDownAtStart(t *testing.T) {
	s := redistest.Start(t)
	s.Stop()
	m := NewMetrics(prometheus.NewRegistry())
	kv := newKV(t, s, Config{Metrics: m})
	_, err := kv.Incr(ctx, "p", "n", 1, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "redis incr") {
		t.Fatalf("Incr with Redis down: %v", err)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("incr", "error")); got != 1 {
		t.Errorf("requests{incr,error} = %v, want 1", got)
	}
	s.Start()
	works(t, kv)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("incr", "ok")); got != 1 {
		t.Errorf("requests{incr,ok} = %v, want 1", got)
	}
}

// A Redis that goes away and comes back (empty: nothing is persisted, and
// it has forgotten the Incr script) is used again.
func TestRestart(t *testing.T) {
	s := redistest.Start(t)
	kv := newKV(t, s, Config{})
	works(t, kv)
	s.Stop()
	if _, _, err := kv.Get(ctx, "p", "k"); err == nil {
		t.Error("Get with Redis stopped: no error")
	}
	s.Start()
	waitRecovered(t, kv, "no recovery after restart")
	works(t, kv)
}

// A Redis that has forgotten the Incr script (SCRIPT FLUSH, as a restart
// does) while callers increment at once: each EVALSHA that meets NOSCRIPT
// is sent again whole, none is lost or counted twice.
func TestNoScriptConcurrent(t *testing.T) {
	s := redistest.Start(t)
	kv := newKV(t, s, Config{})
	works(t, kv) // the script is loaded
	const callers, each = 16, 50
	for round := range 3 {
		s.CLI("SCRIPT", "FLUSH")
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for range each {
					if _, err := kv.Incr(ctx, "p", "hits", 1, time.Minute); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if got, want := strings.TrimSpace(s.CLI("GET", "sluice:p:hits")), strconv.Itoa((round+1)*callers*each); got != want {
			t.Errorf("round %d: the counter is %s, want %s", round, got, want)
		}
	}
}

// A hung Redis (SIGSTOP): every call fails by its deadline, counted as a
// timeout, and calls work again once it resumes. The bound is loose: it
// proves no call hangs, it does not measure speed.
func TestPause(t *testing.T) {
	s := redistest.Start(t)
	m := NewMetrics(prometheus.NewRegistry())
	const timeout = 200 * time.Millisecond
	kv := newKV(t, s, Config{Timeout: timeout, Metrics: m})
	works(t, kv)
	s.Pause()
	t.Cleanup(s.Resume) // before Stop
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			start := time.Now()
			_, err := kv.Incr(ctx, "p", "n"+strconv.Itoa(i), 1, time.Minute)
			if took := time.Since(start); err == nil || took > timeout+2*time.Second {
				t.Errorf("Incr with Redis hung: %v after %v", err, took)
			}
		})
	}
	wg.Wait()
	// A caller's own earlier deadline counts too.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := kv.Get(short, "p", "k"); err == nil || time.Since(start) > timeout+2*time.Second {
		t.Errorf("Get with an earlier deadline: %v after %v", err, time.Since(start))
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("incr", "timeout")); got != 8 {
		t.Errorf("requests{incr,timeout} = %v, want 8", got)
	}
	s.Resume()
	waitRecovered(t, kv, "no recovery after resume")
}

// Paused before the first call: the connection attempt hangs, and calls
// still end at their deadline.
func TestPauseAtStart(t *testing.T) {
	s := redistest.Start(t)
	s.Pause()
	t.Cleanup(s.Resume)
	kv := newKV(t, s, Config{Timeout: 200 * time.Millisecond})
	for range 3 {
		start := time.Now()
		if _, _, err := kv.Get(ctx, "p", "k"); err == nil || time.Since(start) > 2*time.Second {
			t.Errorf("Get, Redis hung before the first connection: %v after %v", err, time.Since(start))
		}
	}
	s.Resume()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := kv.Get(ctx, "p", "k")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after resume: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{{}, {Addrs: []string{"localhost"}}, {Addrs: []string{"a:1"}, DB: -1}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
}

// The least an ACL user needs, as docs/cluster.md has it: its keys, and
// reading, writing and scripts; the doctor's PING too.
func TestLeastACL(t *testing.T) {
	s := redistest.Start(t, redistest.Args("--user", "sluice", "on", ">pw", "~sluice:*", "+@read", "+@write", "+@scripting", "+ping"))
	kv := newKV(t, s, Config{Username: "sluice", Password: "pw"})
	works(t, kv)
	if err := kv.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	// A database other than 0 needs +select too, as docs/cluster.md says:
	// without it every connection fails.
	_, _, err := newKV(t, s, Config{Username: "sluice", Password: "pw", DB: 1}).Get(ctx, "p", "k")
	if err == nil || !strings.Contains(err.Error(), "select") {
		t.Errorf("redis_db 1 without +select: %v, want NOPERM for select", err)
	}
	s.CLI("ACL", "SETUSER", "sluice", "+select")
	works(t, newKV(t, s, Config{Username: "sluice", Password: "pw", DB: 1}))
	// Keys outside the prefix are refused.
	other := newKV(t, s, Config{Username: "sluice", Password: "pw", Prefix: "other:"})
	if _, _, err = other.Get(ctx, "p", "k"); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("a key outside the user's pattern: %v", err)
	}
}

// leastACL is the ACL docs/cluster.md gives a user, and what it adds for
// Sentinel and a Redis Cluster.
var (
	leastACL    = []string{"on", ">pw", "~sluice:*", "+@read", "+@write", "+@scripting", "+ping"}
	sentinelACL = []string{"+role"}
	clusterACL  = []string{"+cluster|slots", "+cluster|shards"}
)

// With Sentinel the client asks the master its ROLE, which the least ACL
// does not grant: the ACL docs/cluster.md gives for Sentinel does.
func TestLeastACLSentinel(t *testing.T) {
	m := redistest.Start(t, redistest.Args(append([]string{"--user", "sluice"}, leastACL...)...))
	sentinel := redistest.StartSentinel(t, "main", m)
	c := Config{SentinelMaster: "main", Username: "sluice", Password: "pw"}
	if _, _, err := newKV(t, sentinel, c).Get(ctx, "p", "k"); err == nil || !strings.Contains(err.Error(), "role") {
		t.Errorf("Sentinel without +role: %v, want NOPERM for role", err)
	}
	m.CLI(append([]string{"ACL", "SETUSER", "sluice"}, sentinelACL...)...)
	works(t, newKV(t, sentinel, c))
}

// On a Redis Cluster, a user that may not ask for the slots gets a client
// of one node, and MOVED for the keys of the others: the error says what
// to grant, and with the ACL docs/cluster.md gives for a Cluster, keys on
// every master work.
func TestLeastACLCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, redistest.Args(append([]string{"--user", "sluice"}, leastACL...)...))
	c := Config{Username: "sluice", Password: "pw"}
	kv := newKV(t, nodes[0], c)
	var moved error
	for i := range 30 {
		if _, err := kv.Incr(ctx, "p", strconv.Itoa(i), 1, time.Minute); err != nil {
			moved = err
		}
	}
	if moved == nil || !strings.Contains(moved.Error(), "MOVED") || !strings.Contains(moved.Error(), "+cluster|slots") {
		t.Errorf("least ACL on a Cluster: %v, want MOVED naming +cluster|slots", moved)
	}
	for _, n := range nodes {
		n.CLI(append([]string{"ACL", "SETUSER", "sluice"}, clusterACL...)...)
	}
	kv = newKV(t, nodes[0], c)
	for i := range 30 {
		if _, err := kv.Incr(ctx, "p", strconv.Itoa(i), 1, time.Minute); err != nil {
			t.Fatalf("with the Cluster's ACL: %v", err)
		}
	}
}

// waitRecovered waits, at most 10 s, until kv counts again after Redis
// came back: the first call may find the old connection broken, and the
// store reconnects by itself within a few calls.
func waitRecovered(t *testing.T, kv *KV, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := kv.Incr(context.Background(), "p", "n", 1, time.Minute)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
