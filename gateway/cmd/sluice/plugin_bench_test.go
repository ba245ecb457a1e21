package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// benchmarkRcpt is one rcpt request through the host (Probe: the chain's
// call path with its deadline and checks) to the example at folder.
func benchmarkRcpt(b *testing.B, folder, config string) {
	benchmarkRcptTo(b, folder, config, "info@example.test")
}

// benchmarkRcptTo is benchmarkRcpt for the recipient rcpt.
func benchmarkRcptTo(b *testing.B, folder, config, rcpt string) {
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
		MailFrom: "a@example.org", Rcpts: []string{"x@example.test"}, Rcpt: rcpt,
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

// BenchmarkRouterLarge is the router with 10,000 exact rules and 100
// patterns (half wildcards, half regular expressions) through the host:
// a recipient found by its exact rule, and one that every pattern is
// tried on before the catch-all takes it.
func BenchmarkRouterLarge(b *testing.B) {
	var config strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&config, "[[rule]]\nmatch = \"user%d@example.test\"\naction = \"forward\"\nto = \"user%d@inbox.test\"\n", i, i)
	}
	for i := range 100 {
		if i%2 == 0 {
			fmt.Fprintf(&config, "[[rule]]\nmatch = \"team%d-*@example.test\"\naction = \"forward\"\nto = \"$1@team%d.test\"\n", i, i)
		} else {
			fmt.Fprintf(&config, "[[rule]]\nregex = '^(.+)-dept%d@example\\.test$'\naction = \"forward\"\nto = \"$1@dept%d.test\"\n", i, i)
		}
	}
	config.WriteString("[[rule]]\nmatch = \"*@example.test\"\naction = \"forward\"\nto = \"all@inbox.test\"\n")
	b.Run("exact", func(b *testing.B) { benchmarkRcptTo(b, "plugins/router", config.String(), "user9999@example.test") })
	b.Run("last-pattern", func(b *testing.B) { benchmarkRcptTo(b, "plugins/router", config.String(), "ana-dept99@example.test") })
	b.Run("catch-all", func(b *testing.B) { benchmarkRcptTo(b, "plugins/router", config.String(), "nobody@example.test") })
}
