package plugin_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
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
}

// ratelimitChain is a chain of the ratelimit plugin alone, counting each
// recipient in kv with a limit no benchmark reaches, with a pool of
// instances as the gateway's default (one per CPU).
func ratelimitChain(b *testing.B, kv plugin.KV) *plugin.Chain {
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
// between the stores' ns/op is what the store adds per recipient. serial
// is one call after another, each waiting for its answer; parallel is 8
// callers per CPU, as many SMTP sessions at once, sharing the plugin's
// pool of instances. docs/cluster.md has the figures.
func BenchmarkRatelimitRcpt(b *testing.B) {
	for _, s := range kvStores {
		b.Run(s.name+"/serial", func(b *testing.B) {
			c := ratelimitChain(b, s.open(b))
			req := rcptRequest("info@example.test")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if !decided(b, c.Run(ctx, req, nil)) {
					return
				}
			}
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			c := ratelimitChain(b, s.open(b))
			b.SetParallelism(8)
			b.ReportAllocs()
			var callers atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				// Each caller its own recipient, as sessions to many
				// addresses: counters apart, as in production.
				req := rcptRequest(fmt.Sprintf("user%d@example.test", callers.Add(1)))
				for pb.Next() {
					if !decided(b, c.Run(context.Background(), req, nil)) {
						return
					}
				}
			})
		})
	}
}
