package main

import (
	"context"
	"io"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// benchmarkRcpt is one rcpt request through the host (Probe: the chain's
// call path with its deadline and checks) to the example at folder.
func benchmarkRcpt(b *testing.B, folder, config string) {
	ctx := context.Background()
	host, p, err := testHost(config).load(ctx, buildExample(b, folder), io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close(ctx)
	defer p.Close(ctx)
	pr, err := p.Probe(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer pr.Close(ctx)
	req := abi.AppendRequest(nil, &abi.Request{
		Stage: abi.StageRcpt, SessionID: "bench", ClientIP: "192.0.2.1", Helo: "client.example",
		MailFrom: "a@example.org", Rcpts: []string{"x@example.test"}, Rcpt: "info@example.test",
	})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pr.Handle(ctx, abi.StageRcpt, req, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallWAT is a call of the hand-written rcptlimit module: the
// host's own cost with a guest that does almost nothing.
func BenchmarkCallWAT(b *testing.B) { benchmarkRcpt(b, "examples/rcptlimit", "max_recipients = 10") }

// BenchmarkCallGo is the same request to the router, a Go guest: the
// difference is what the Go runtime and the SDK cost per call.
func BenchmarkCallGo(b *testing.B) { benchmarkRcpt(b, "plugins/router", routerConfig) }
