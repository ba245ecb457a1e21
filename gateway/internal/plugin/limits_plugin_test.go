package plugin

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// hostWithClock is a host whose key-value store runs on clk, so that
// tests move the TTLs of plugins' counters without waiting.
func hostWithClock(t *testing.T, clk *fakeclock.Clock) *Host {
	t.Helper()
	h, err := NewHost(context.Background(), HostConfig{CacheDir: wasmbuild.CacheDirForTest(), KV: NewMemoryKV(MemoryKVConfig{Now: clk.Now})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// replyOf is an outcome in a reply's words: "continue" or "450 4.7.1 text".
func replyOf(o Outcome) string {
	if o.Reply == nil {
		return o.Action.String()
	}
	e := o.Reply.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", o.Reply.Code, e[0], e[1], e[2], o.Reply.Message)
}

// The real plugins/ratelimit module through the host's chain: a client's
// limit over a fixed window kept by the store's clock, and the 421 that
// closes the session.
func TestRatelimitPluginThroughChain(t *testing.T) {
	clk := fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	h := hostWithClock(t, clk)
	p := load(t, h, Spec{
		Name: "ratelimit", Path: wasmbuild.ForTest(t, "./plugins/ratelimit"), Instances: 2, Capabilities: abi.CapKV,
		Config: []byte("code = 421\n[[limit]]\ncount = \"client\"\nmax = 2\nper = \"1h\"\n[[limit]]\ncount = \"recipient\"\nmax = 1\nper = \"1m\"\n"),
	})
	if want := abi.StageSetOf(abi.StageMail, abi.StageRcpt, abi.StageData); p.Stages() != want {
		t.Errorf("ratelimit is called at %s, want mail, rcpt, data", stageList(p.Stages()))
	}
	c := NewChain(p)
	ctx := context.Background()
	mail := &abi.Request{Stage: abi.StageMail, SessionID: "s1", ClientIP: "2001:db8:5:6::1", MailFrom: "a@example.org"}
	for _, want := range []string{"continue", "continue", "421 4.7.1 Client network 2001:db8:5:6::/64 exceeded 2 messages per 1h, try again later"} {
		if got := replyOf(c.Run(ctx, mail, nil)); got != want {
			t.Errorf("mail: %q, want %q", got, want)
		}
	}
	clk.Advance(time.Hour)
	if got := replyOf(c.Run(ctx, mail, nil)); got != "continue" {
		t.Errorf("mail an hour later: %q, want continue", got)
	}
	rcpt := &abi.Request{Stage: abi.StageRcpt, SessionID: "s1", ClientIP: "192.0.2.1", MailFrom: "a@example.org", Rcpt: "info@example.test"}
	c.Run(ctx, rcpt, nil)
	if got := replyOf(c.Run(ctx, rcpt, nil)); got != "421 4.7.1 Recipient info@example.test exceeded 1 message per 1m, try again later" {
		t.Errorf("rcpt: %q", got)
	}
}

// Instances of the plugin counting at once let exactly max through: the
// counter is one atomic increment, not a read and a write.
func TestRatelimitPluginConcurrent(t *testing.T) {
	clk := fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	h := hostWithClock(t, clk)
	c := NewChain(load(t, h, Spec{
		Name: "ratelimit", Path: wasmbuild.ForTest(t, "./plugins/ratelimit"), Instances: 4, Capabilities: abi.CapKV,
		Config: []byte("[[limit]]\ncount = \"sender_domain\"\nmax = 25\nper = \"1h\"\n"),
	}))
	var passed, deferred atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				req := &abi.Request{Stage: abi.StageMail, SessionID: "s", ClientIP: "192.0.2.1", MailFrom: "a@example.org"}
				switch o := c.Run(context.Background(), req, nil); o.Action {
				case abi.Continue:
					passed.Add(1)
				case abi.Tempfail:
					deferred.Add(1)
				default:
					t.Errorf("%+v", o)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != 25 || deferred.Load() != 55 {
		t.Errorf("%d passed and %d deferred, want 25 and 55", passed.Load(), deferred.Load())
	}
}

// The real plugins/greylist module through the host's chain: the first
// attempt is deferred, a retry too early as well, a retry after the delay
// passes, and then the client's network. The delay runs on the store's
// clock.
func TestGreylistPluginThroughChain(t *testing.T) {
	clk := fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	h := hostWithClock(t, clk)
	p := load(t, h, Spec{
		Name: "greylist", Path: wasmbuild.ForTest(t, "./plugins/greylist"), Instances: 2, Capabilities: abi.CapKV,
		Config: []byte("delay = \"5m\"\nallow_client_names = [\"mail.example.net\"]\n"),
	})
	if p.Permissions() != abi.MayTempfail {
		t.Errorf("greylist permissions = %b, want tempfail only", p.Permissions())
	}
	c := NewChain(p)
	ctx := context.Background()
	req := &abi.Request{Stage: abi.StageRcpt, SessionID: "s1", ClientIP: "192.0.2.10", MailFrom: "alice@example.org", Rcpt: "info@example.test"}
	if got := replyOf(c.Run(ctx, req, nil)); got != "451 4.7.1 Greylisted, try again in 300 seconds" {
		t.Errorf("first attempt: %q", got)
	}
	clk.Advance(time.Minute)
	// How long is left comes from the plugin's clock, which the test does
	// not move: about 300 seconds.
	if got := replyOf(c.Run(ctx, req, nil)); !strings.HasPrefix(got, "451 4.7.1 Greylisted, try again in ") {
		t.Errorf("too early: %q", got)
	}
	clk.Advance(4 * time.Minute)
	if got := replyOf(c.Run(ctx, req, nil)); got != "continue" {
		t.Errorf("retry after the delay: %q", got)
	}
	other := &abi.Request{Stage: abi.StageRcpt, SessionID: "s2", ClientIP: "192.0.2.77", MailFrom: "bob@example.com", Rcpt: "sales@example.test"}
	if got := replyOf(c.Run(ctx, other, nil)); got != "continue" {
		t.Errorf("the allowlisted network: %q", got)
	}
	fcrdns := &abi.Request{Stage: abi.StageRcpt, SessionID: "s3", ClientIP: "198.51.100.1", ClientName: "mail.example.net", ClientNameResult: "pass",
		MailFrom: "carol@example.net", Rcpt: "info@example.test"}
	if got := replyOf(c.Run(ctx, fcrdns, nil)); got != "continue" {
		t.Errorf("a client with an allowed forward-confirmed name: %q", got)
	}
}
