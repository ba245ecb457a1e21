package resolver

import (
	"context"
	"net/netip"
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

// BenchmarkVerifiedNameCached is the client name's check as each session
// makes it (a PTR record, then its name's addresses), from the cache.
func BenchmarkVerifiedNameCached(b *testing.B) {
	s := dnstest.Start(b, reverseZone)
	r := newResolver(b, Config{}, s.Addr())
	ctx := context.Background()
	ip := netip.MustParseAddr("127.0.0.1")
	if name, result := r.VerifiedName(ctx, ip); result != NamePass {
		b.Fatalf("VerifiedName = %q, %q; want a pass", name, result)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.VerifiedName(ctx, ip)
	}
}
