package smtpd

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// routerChain loads the router plugin into a chain of its own, forwarding
// info@example.test to dest.
func routerChain(t testing.TB, h *plugin.Host, dest string) *plugin.Chain {
	t.Helper()
	p, err := h.Load(context.Background(), plugin.Spec{
		Name:      "router",
		Path:      wasmbuild.ForTest(t, "./plugins/router"),
		Config:    []byte("[[rule]]\nmatch = \"info@example.test\"\naction = \"forward\"\nto = \"" + dest + "\"\n"),
		Hostname:  "mx.example.test",
		Instances: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return plugin.NewChain(p)
}

func newTestHost(t testing.TB) *plugin.Host {
	t.Helper()
	h, err := plugin.NewHost(context.Background(), plugin.HostConfig{CacheDir: wasmbuild.CacheDirForTest()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// parts makes the Parts of a generation around chain c, with a relay
// and an SRS rewriter of their own.
func parts(t testing.TB, c *plugin.Chain) Parts {
	t.Helper()
	r, err := relay.New(relay.Config{Helo: "mx.example.test"}, loopbackMX{})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := srs.New(srs.Config{Domain: "example.test", Secrets: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	return Parts{Chain: c, Relay: r, SRS: rw}
}

func newGenerations(t testing.TB, c *plugin.Chain, log *slog.Logger) *Generations {
	t.Helper()
	gens, err := NewGenerations(parts(t, c), log)
	if err != nil {
		t.Fatal(err)
	}
	return gens
}

// swap swaps in a generation around c and returns its number.
func swap(t testing.TB, gens *Generations, c *plugin.Chain) uint64 {
	t.Helper()
	n, err := gens.Swap(parts(t, c))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// route runs the chain for info@example.test and returns where it goes,
// or the first plugin failure.
func route(c *plugin.Chain) (string, error) {
	o := c.Run(context.Background(), &abi.Request{Stage: abi.StageRcpt, Rcpt: "info@example.test"}, nil)
	for _, v := range o.Verdicts {
		if v.Err != nil {
			return "", v.Err
		}
	}
	return strings.Join(o.Destinations, ","), nil
}

// A swapped-out generation serves its sessions to their end and closes
// when the last of them releases it; the new one serves new sessions.
func TestGenerationsSwapKeepsOldPartsForTheirSessions(t *testing.T) {
	h := newTestHost(t)
	logs := &strings.Builder{}
	gens := newGenerations(t, routerChain(t, h, "v1@dest.test"), slog.New(slog.NewTextHandler(logs, nil)))
	defer gens.Close()

	a := gens.Acquire()
	b := gens.Acquire()
	if a != b || a.N != 1 {
		t.Fatalf("two acquires before a swap: generations %d and %d, want both 1", a.N, b.N)
	}
	old := a.Chain
	if n := swap(t, gens, routerChain(t, h, "v2@dest.test")); n != 2 {
		t.Fatalf("swap made generation %d, want 2", n)
	}
	c := gens.Acquire()
	if c.N != 2 {
		t.Fatalf("a session after the swap got generation %d", c.N)
	}
	if got, err := route(c.Chain); err != nil || got != "v2@dest.test" {
		t.Errorf("new chain routes to %q, %v", got, err)
	}
	// Sessions in flight still run the old chain.
	if got, err := route(a.Chain); err != nil || got != "v1@dest.test" {
		t.Errorf("old chain, still in use, routes to %q, %v", got, err)
	}
	if n := gens.Open(); n != 2 {
		t.Errorf("%d generations open, want 2", n)
	}
	a.Release()
	if _, err := route(old); err != nil {
		t.Errorf("old chain closed while a session still held it: %v", err)
	}
	b.Release()
	if n := gens.Open(); n != 1 {
		t.Errorf("%d generations open after the old one's last release, want 1", n)
	}
	if _, err := route(old); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("old chain still answers after its last release: %v", err)
	}
	if !strings.Contains(logs.String(), "generation closed") || !strings.Contains(logs.String(), "generation=1") {
		t.Errorf("log lacks the close of generation 1: %s", logs)
	}
	c.Release()
	if _, err := route(c.Chain); err != nil {
		t.Errorf("the current chain closed when its sessions ended: %v", err)
	}
}

// Close drops the current chain once its sessions are done, and no new
// session gets one; a chain swapped in after Close is closed at once.
func TestGenerationsClose(t *testing.T) {
	h := newTestHost(t)
	gens := newGenerations(t, routerChain(t, h, "v1@dest.test"), nil)
	g := gens.Acquire()
	gens.Close()
	if gens.Acquire() != nil {
		t.Error("Acquire after Close returned a generation")
	}
	if _, err := route(g.Chain); err != nil {
		t.Errorf("chain closed under a session: %v", err)
	}
	g.Release()
	if _, err := route(g.Chain); err == nil {
		t.Error("chain still open after Close and its last release")
	}
	late := routerChain(t, h, "v2@dest.test")
	if n := swap(t, gens, late); n != 0 {
		t.Errorf("Swap after Close returned generation %d", n)
	}
	if _, err := route(late); err == nil {
		t.Error("a chain swapped in after Close was not closed")
	}
	if gens.Open() != 0 {
		t.Errorf("%d generations open after Close", gens.Open())
	}
}

// Sessions acquiring and releasing from many goroutines while swaps
// happen leave exactly the current generation open.
func TestGenerationsConcurrentSwaps(t *testing.T) {
	h := newTestHost(t)
	gens := newGenerations(t, plugin.NewChain(), nil)
	defer gens.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				g := gens.Acquire()
				if _, err := route(g.Chain); err != nil {
					t.Errorf("generation %d: %v", g.N, err)
					return
				}
				g.Release()
			}
		})
	}
	for range 3 {
		swap(t, gens, routerChain(t, h, "x@dest.test"))
	}
	wg.Wait()
	if n := gens.Open(); n != 1 {
		t.Errorf("%d generations open, want 1", n)
	}
}

// What each session pays to take and give back its chain.
func BenchmarkGenerationsAcquireRelease(b *testing.B) {
	gens := newGenerations(b, plugin.NewChain(), nil)
	defer gens.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			gens.Acquire().Release()
		}
	})
}

// Parts a session cannot work without are refused, by the first
// generation and by a swap, and a refused swap leaves the current
// generation serving.
func TestGenerationsRefuseIncompleteParts(t *testing.T) {
	if _, err := NewGenerations(Parts{Chain: plugin.NewChain()}, nil); err == nil {
		t.Error("NewGenerations took parts without a relay or SRS")
	}
	gens := newGenerations(t, plugin.NewChain(), nil)
	defer gens.Close()
	p := parts(t, plugin.NewChain())
	p.Seal = &arc.SealConfig{}
	if n, err := gens.Swap(p); err == nil || n != 0 {
		t.Errorf("Swap of parts that seal without checks: %d, %v; want an error", n, err)
	}
	if g := gens.Acquire(); g == nil || g.N != 1 {
		t.Error("a refused swap replaced the current generation")
	} else {
		g.Release()
	}
}
