package dmarc

import (
	"context"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
)

// BenchmarkEvaluate measures Evaluate with every DNS answer in the
// resolver's cache, as for the second message from a domain.
func BenchmarkEvaluate(b *testing.B) {
	s := dnstest.Start(b, zone)
	r := newTestResolver(b, s)
	for _, bench := range []struct {
		name, from string
		ids        Identifiers
	}{
		{"from-domain-record", "example.org", Identifiers{SPFResult: "pass", SPFDomain: "example.org", DKIM: []DKIMResult{{"pass", "example.org"}}}},
		{"org-fallback", "mail.example.org", Identifiers{SPFResult: "pass", SPFDomain: "bounce.example.org"}},
		{"np-nonexistent", "ghost.example.org", Identifiers{DKIM: []DKIMResult{{"fail", "ghost.example.org"}}}},
	} {
		for _, how := range []Discovery{TreeWalk, PublicSuffix} {
			b.Run(bench.name+"/"+how.String(), func(b *testing.B) {
				ctx := context.Background()
				Evaluate(ctx, r, how, bench.from, bench.ids) // warm the cache
				queries := s.Queries()
				b.ReportAllocs()
				for b.Loop() {
					Evaluate(ctx, r, how, bench.from, bench.ids)
				}
				if s.Queries() != queries {
					b.Fatalf("%d DNS queries during the loop: the cache was not warm", s.Queries()-queries)
				}
			})
		}
	}
}
