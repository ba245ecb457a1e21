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
		tls     bool // STARTTLS (under may: the certificate is checked, not required)
	}{
		{"reuse", 0, false},
		{"fresh", -1, false},
		{"fresh-tls", -1, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			port, lns := listenSamePort(b, "127.0.0.2")
			d := newDestination()
			if bc.tls {
				d.server.TLSConfig = selfSignedTLS(b, "mx.example.test")
			}
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
