package plugin_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/rediskv"
	"github.com/sluice-mail/sluice/gateway/internal/redistest"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// A KV call ends by the plugin call's own deadline, not only by the
// store's timeout: with a hung Redis (SIGSTOP) and a redis_timeout far
// longer than the plugin's timeout, the ratelimit plugin still answers
// within its timeout, with a failure its on_failure turns into 451.
// The guest's interrupt cannot stop a call while a host function waits,
// so without the bound the call would wait the whole redis_timeout.
func TestKVCallEndsByThePluginsDeadline(t *testing.T) {
	r := redistest.Start(t)
	const storeTimeout = 20 * time.Second
	kv, err := rediskv.New(rediskv.Config{Addrs: []string{r.Addr()}, Prefix: "sluice:", Timeout: storeTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kv.Close)
	if err := kv.Ping(context.Background()); err != nil { // connected before the pause
		t.Fatal(err)
	}
	h, err := plugin.NewHost(context.Background(), plugin.HostConfig{KV: kv, CacheDir: wasmbuild.CacheDirForTest()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	p, err := h.Load(context.Background(), plugin.Spec{
		Name:         "ratelimit",
		Path:         wasmbuild.ForTest(t, "./plugins/ratelimit"),
		Stages:       []abi.Stage{abi.StageRcpt},
		Capabilities: abi.CapKV,
		Timeout:      time.Second,
		OnFailure:    plugin.Tempfail,
		Config:       []byte("[[limit]]\ncount = \"recipient\"\nmax = 10\nper = \"1h\"\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	c := plugin.NewChain(p)
	if o := c.Run(context.Background(), rcptRequest("info@example.test"), nil); o.Action != abi.Continue {
		t.Fatalf("with Redis up: %+v", o)
	}

	r.Pause()
	defer r.Resume()
	start := time.Now()
	o := c.Run(context.Background(), rcptRequest("info@example.test"), nil)
	took := time.Since(start)
	t.Logf("the call with Redis hung took %v", took)
	if o.Action != abi.Tempfail || len(o.Verdicts) != 1 || o.Verdicts[0].Err == nil {
		t.Errorf("with Redis hung: %+v, want a Tempfail with the plugin's error", o)
	}
	// A bound, not a speed: the plugin's timeout is 1s, Redis's 20s.
	if took >= storeTimeout/2 {
		t.Errorf("the call took %v: the KV call outlived the plugin's timeout of 1s", took)
	}
	if o.Reply == nil || o.Reply.Code != 451 {
		t.Errorf("reply %v, want 451", o.Reply)
	}
}
