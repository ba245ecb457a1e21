package plugin_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/rediskv"
	"github.com/sluice-mail/sluice/gateway/internal/redistest"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// A test package of its own (plugin_test), so that it can use the stores
// that import plugin, such as Redis's.

// kvStores are the stores the ratelimit benchmarks run against, each made
// fresh for one benchmark.
var kvStores = []struct {
	name string
	open func(b *testing.B) plugin.KV
}{
	{"memory", func(*testing.B) plugin.KV { return plugin.NewMemoryKV(plugin.MemoryKVConfig{}) }},
	{"redis", openRedis},
}

// openRedis is the store in a redis-server of its own on loopback, as
// [cluster] redis makes it: every call a round trip, concurrent calls
// pipelined on one connection by the client.
func openRedis(b *testing.B) plugin.KV {
	r := redistest.Start(b)
	kv, err := rediskv.New(rediskv.Config{Addrs: []string{r.Addr()}, Prefix: "sluice:", Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(kv.Close)
	return kv
}

// ratelimitChain is a chain of the ratelimit plugin alone, counting each
// recipient in kv with a limit no benchmark reaches, with a pool of
// instances: 0 means the gateway's default, one per CPU.
func ratelimitChain(b *testing.B, kv plugin.KV, instances int) *plugin.Chain {
	b.Helper()
	h, err := plugin.NewHost(context.Background(), plugin.HostConfig{KV: kv, CacheDir: wasmbuild.CacheDirForTest()})
	if err != nil {
		b.Fatal(err)
	}
	p, err := h.Load(context.Background(), plugin.Spec{
		Name:         "ratelimit",
		Path:         wasmbuild.ForTest(b, "./plugins/ratelimit"),
		Stages:       []abi.Stage{abi.StageRcpt},
		Capabilities: abi.CapKV,
		Instances:    instances,
		Config: []byte(`
[[limit]]
count = "recipient"
max = 1000000000
per = "1h"
`),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		p.Close(context.Background())
		h.Close(context.Background())
	})
	return plugin.NewChain(p)
}

// rcptRequest is RCPT TO:<to> from a client.
func rcptRequest(to string) *abi.Request {
	return &abi.Request{Stage: abi.StageRcpt, SessionID: "s1", ClientIP: "192.0.2.1", Helo: "client.example.net",
		MailFrom: "alice@sender.test", Rcpt: to}
}

// decided checks that the ratelimit let the recipient pass, having counted
// it: a failure of the store would be a Tempfail with an error.
func decided(b *testing.B, o plugin.Outcome) bool {
	if o.Action != abi.Continue || len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil {
		b.Errorf("outcome %+v", o)
		return false
	}
	return true
}

// BenchmarkRatelimitRcpt is the ratelimit plugin's decision on one
// recipient (one kv_incr of its counter) with each store: the difference
// between the stores' figures is what the store adds per recipient.
//
//   - serial: one call after another, each waiting for its answer;
//   - parallel: 8 callers per CPU, as many SMTP sessions at once, sharing
//     the plugin's pool of instances, one per CPU as by default;
//   - parallel-pool16: the same with instances = 16, so that calls waiting
//     on Redis do not hold every instance.
//
// In the parallel runs ns/op is the throughput (the time per decision of
// all callers together) and µs/decision what one caller waited for its
// answer, the latency a session sees. docs/cluster.md has the figures.
func BenchmarkRatelimitRcpt(b *testing.B) {
	for _, s := range kvStores {
		b.Run(s.name+"/serial", func(b *testing.B) {
			c := ratelimitChain(b, s.open(b), 0)
			req := rcptRequest("info@example.test")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if !decided(b, c.Run(ctx, req, nil)) {
					return
				}
			}
		})
		b.Run(s.name+"/parallel", func(b *testing.B) { benchmarkParallel(b, ratelimitChain(b, s.open(b), 0)) })
		b.Run(s.name+"/parallel-pool16", func(b *testing.B) { benchmarkParallel(b, ratelimitChain(b, s.open(b), 16)) })
	}
}

// benchmarkParallel asks c from 8 callers per CPU, each for a recipient
// of its own, as sessions to many addresses: counters apart.
func benchmarkParallel(b *testing.B, c *plugin.Chain) {
	b.SetParallelism(8)
	b.ReportAllocs()
	var callers, calls, waited atomic.Int64
	b.ResetTimer() // the pool's start is not what is measured
	b.RunParallel(func(pb *testing.PB) {
		req := rcptRequest(fmt.Sprintf("user%d@example.test", callers.Add(1)))
		for pb.Next() {
			start := time.Now()
			if !decided(b, c.Run(context.Background(), req, nil)) {
				return
			}
			waited.Add(int64(time.Since(start)))
			calls.Add(1)
		}
	})
	b.ReportMetric(float64(waited.Load())/float64(calls.Load())/1e3, "µs/decision")
}
