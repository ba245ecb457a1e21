package plugin

import (
	"context"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
)

func benchmarkRcpt(b *testing.B, deadline bool) {
	h, _ := newHost(b)
	s := routerSpec(b)
	s.noDeadline = !deadline
	c := NewChain(load(b, h, s))
	req := rcpt("Info+news@Example.test")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if o := c.Run(ctx, req, nil); o.Destination != "me@inbox.test" {
			b.Fatalf("outcome %+v", o)
		}
	}
}

// BenchmarkChainRcpt is one recipient through a chain of the router, with
// the per-call deadline as the gateway runs it.
func BenchmarkChainRcpt(b *testing.B) { benchmarkRcpt(b, true) }

// BenchmarkChainRcptNoDeadline is the same call without the deadline: the
// difference is what the deadline mechanism costs.
func BenchmarkChainRcptNoDeadline(b *testing.B) { benchmarkRcpt(b, false) }

// BenchmarkChainRcptParallel is the router with a pool of GOMAXPROCS
// instances, called from many goroutines.
func BenchmarkChainRcptParallel(b *testing.B) {
	h, _ := newHost(b)
	s := routerSpec(b)
	s.Instances = 0
	c := NewChain(load(b, h, s))
	b.RunParallel(func(pb *testing.PB) {
		req := rcpt("Info+news@Example.test")
		for pb.Next() {
			if o := c.Run(context.Background(), req, nil); o.Destination != "me@inbox.test" {
				b.Errorf("outcome %+v", o)
				return
			}
		}
	})
}

// BenchmarkChainUnsubscribed is a stage no plugin of the chain handles.
func BenchmarkChainUnsubscribed(b *testing.B) {
	h, _ := newHost(b)
	c := NewChain(load(b, h, routerSpec(b)))
	req := &abi.Request{Stage: abi.StageHelo, Helo: "client.test"}
	b.ReportAllocs()
	for b.Loop() {
		c.Run(context.Background(), req, nil)
	}
}

// BenchmarkInstanceStart is starting and configuring one router instance,
// as when a failed one is replaced.
func BenchmarkInstanceStart(b *testing.B) {
	h, _ := newHost(b)
	p := load(b, h, routerSpec(b))
	for b.Loop() {
		inst, err := p.start(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		inst.close(context.Background())
	}
}
