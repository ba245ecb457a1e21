package resolver

import (
	"context"
	"testing"

	"github.com/miekg/dns"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
)

func BenchmarkLookupMXCached(b *testing.B) {
	s := dnstest.Start(b, zone)
	r := newResolver(b, Config{}, s.Addr())
	ctx := context.Background()
	if _, err := r.LookupMX(ctx, "example.test"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := r.LookupMX(ctx, "example.test"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQueryCachedParallel(b *testing.B) {
	s := dnstest.Start(b, zone)
	r := newResolver(b, Config{}, s.Addr())
	ctx := context.Background()
	if _, err := r.Query(ctx, "host.example.test.", dns.TypeA); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Query(ctx, "host.example.test.", dns.TypeA); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
