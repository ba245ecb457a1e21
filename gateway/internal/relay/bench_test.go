package relay

import (
	"context"
	"testing"
)

// BenchmarkTransaction measures one whole relayed transaction (MAIL, RCPT,
// DATA of a small message) to a go-smtp sink on loopback.
func BenchmarkTransaction(b *testing.B) {
	for _, bc := range []struct {
		name    string
		maxIdle int
	}{
		{"reuse", 0},
		{"fresh", -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			port, lns := listenSamePort(b, "127.0.0.2")
			d := newDestination()
			d.serve(b, lns...)
			r := newTestRelay(b, port, oneMX(b, "127.0.0.2"), func(c *Config) { c.MaxIdle = bc.maxIdle })
			ctx := context.Background()
			msg := []byte(testMessage)
			b.ReportAllocs()
			for b.Loop() {
				txn, rcptErr, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, "owner@real.test")
				if err != nil {
					b.Fatal(err)
				}
				if err := rcptErr; err != nil {
					b.Fatal(err)
				}
				if _, err := txn.Data(ctx, msg); err != nil {
					b.Fatal(err)
				}
				txn.Close()
			}
		})
	}
}
