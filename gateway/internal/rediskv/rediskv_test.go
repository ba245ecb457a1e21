package rediskv

import (
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/plugin/kvtest"
	"github.com/sluice-mail/sluice/gateway/internal/redistest"
)

// newKV is a store on s with the config c (Addrs and Prefix filled in
// when empty), closed when the test ends.
func newKV(t testing.TB, s *redistest.Server, c Config) *KV {
	t.Helper()
	if c.Addrs == nil {
		c.Addrs = []string{s.Addr()}
	}
	if c.Prefix == "" {
		c.Prefix = "sluice:"
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second // a loaded test machine is slow; outage tests set their own
	}
	kv, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kv.Close)
	return kv
}

func TestContract(t *testing.T) {
	s := redistest.Start(t)
	kvtest.Run(t, func(t testing.TB) plugin.KV {
		s.CLI("FLUSHALL")
		return newKV(t, s, Config{})
	})
}
