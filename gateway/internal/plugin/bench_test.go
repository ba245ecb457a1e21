package plugin

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// The chain benchmarks run under each deadline mechanism: "interrupt" is
// the gateway's (an instrumented module, a flag set by a timer), "none"
// is the baseline without a deadline, and "ccd" is wazero's
// WithCloseOnContextDone, which interrupt replaced. docs/plugins.md has
// the figures as ratios to "none".
var deadlineModes = []struct {
	name string
	mode deadlineMode
}{
	{"interrupt", deadlineInterrupt},
	{"none", deadlineNone},
	{"ccd", deadlineCCD},
}

// benchmarkChain runs req through a chain of the plugin s under each
// deadline mechanism, checking every outcome with ok.
func benchmarkChain(b *testing.B, s Spec, req *abi.Request, ok func(Outcome) bool) {
	for _, m := range deadlineModes {
		b.Run(m.name, func(b *testing.B) {
			h, _ := newHost(b)
			s.deadline = m.mode
			c := NewChain(load(b, h, s))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if o := c.Run(ctx, req, nil); !ok(o) {
					b.Fatalf("outcome %+v", o)
				}
			}
		})
	}
}

// BenchmarkChainRcpt is one recipient through a chain of the router.
func BenchmarkChainRcpt(b *testing.B) {
	benchmarkChain(b, routerSpec(b), rcpt("Info+news@Example.test"),
		func(o Outcome) bool { return destinationIs(o, "me@inbox.test") })
}

// BenchmarkChainData is one message's data stage through a chain of the
// dmarc plugin: the Auth fields, the pct hash, and a reject or a
// quarantine.
func BenchmarkChainData(b *testing.B) {
	req := dmarcData("fail", "reject")
	req.Auth.DMARC.Pct = 50
	benchmarkChain(b, Spec{Name: "dmarc", Path: wasmbuild.ForTest(b, "./plugins/dmarc"), Instances: 1}, req,
		func(o Outcome) bool { return o.Action == abi.Reject || o.Quarantine != "" })
}

// BenchmarkChainStage is each stage through a chain of the scripted test
// plugin answering continue: what a call costs with the least work in the
// guest.
func BenchmarkChainStage(b *testing.B) {
	full := &abi.Request{
		SessionID: "s1", ClientIP: "192.0.2.1", ClientName: "client.example.net", Helo: "client.example.net",
		MailFrom: "a@sender.test", Rcpt: "info@example.test", Rcpts: []string{"info@example.test"}, Size: 2048,
	}
	for _, st := range []abi.Stage{abi.StageConnect, abi.StageHelo, abi.StageMail, abi.StageRcpt, abi.StageData} {
		b.Run(st.String(), func(b *testing.B) {
			req := *full
			req.Stage = st
			benchmarkChain(b, scriptedSpec(b, "scripted", ""), &req,
				func(o Outcome) bool { return o.Action == abi.Continue && o.Verdicts[0].Err == nil })
		})
	}
}

// BenchmarkChainRcptParallel is the router with a pool of GOMAXPROCS
// instances, called from many goroutines.
func BenchmarkChainRcptParallel(b *testing.B) {
	h, _ := newHost(b)
	s := routerSpec(b)
	s.Instances = 0
	c := NewChain(load(b, h, s))
	b.RunParallel(func(pb *testing.PB) {
		req := rcpt("Info+news@Example.test")
		for pb.Next() {
			if o := c.Run(context.Background(), req, nil); !destinationIs(o, "me@inbox.test") {
				b.Errorf("outcome %+v", o)
				return
			}
		}
	})
}

// BenchmarkChainUnsubscribed is a stage no plugin of the chain handles.
func BenchmarkChainUnsubscribed(b *testing.B) {
	h, _ := newHost(b)
	c := NewChain(load(b, h, routerSpec(b)))
	req := &abi.Request{Stage: abi.StageHelo, Helo: "client.test"}
	b.ReportAllocs()
	for b.Loop() {
		c.Run(context.Background(), req, nil)
	}
}

// BenchmarkInstanceStart is starting and configuring one router instance,
// as when a failed one is replaced.
func BenchmarkInstanceStart(b *testing.B) {
	for _, m := range deadlineModes {
		b.Run(m.name, func(b *testing.B) {
			h, _ := newHost(b)
			s := routerSpec(b)
			s.deadline = m.mode
			p := load(b, h, s)
			for b.Loop() {
				inst, err := p.start(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				inst.close(context.Background())
			}
		})
	}
}

// BenchmarkDeadlineArming compares ways to arm and disarm a per-call
// deadline, without the call: the instance's reused timer (what the host
// does), a new timer per call, a context per call (what host functions
// would see), and time.Now, the least a shared ticker would cost per call
// to know when the call started.
func BenchmarkDeadlineArming(b *testing.B) {
	b.Run("reused-timer", func(b *testing.B) {
		fired := make(chan struct{}, 1)
		t := time.AfterFunc(time.Hour, func() { fired <- struct{}{} })
		t.Stop()
		b.ReportAllocs()
		for b.Loop() {
			t.Reset(time.Second)
			if !t.Stop() {
				<-fired
			}
		}
	})
	b.Run("timer-per-call", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			time.AfterFunc(time.Second, func() {}).Stop()
		}
	})
	b.Run("context-per-call", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, cancel := context.WithTimeout(context.Background(), time.Second)
			cancel()
		}
	})
	b.Run("time-now", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = time.Now()
		}
	})
}
