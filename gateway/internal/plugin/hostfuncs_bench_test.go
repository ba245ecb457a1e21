package plugin

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// benchMessage is a message with a body of the given size.
func benchMessage(size int) *Message {
	return &Message{
		Header: message.ParseHeader([]byte("From: a@example.test\r\nTo: b@example.test\r\nSubject: a benchmark\r\nMessage-ID: <1@example.test>\r\n")),
		Body:   bytes.Repeat([]byte("0123456789abcdef"), size/16),
	}
}

// benchCommands runs the hostcalls plugin at the data stage with these
// commands, each op one chain call.
func benchCommands(b *testing.B, h *Host, msg *Message, commands string, want string) {
	c := NewChain(load(b, h, hostcallsSpec(b, "hc", allCaps)))
	req := &abi.Request{Stage: abi.StageData, SessionID: "s1", ClientIP: "127.0.0.1", Helo: commands}
	ctx := context.Background()
	o := c.Run(ctx, req, msg)
	if len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil || (want != "" && (len(o.AddHeaders) == 0 || !strings.Contains(o.AddHeaders[0].Value, want))) {
		b.Fatalf("%q: %+v", commands, o)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Run(ctx, req, msg)
	}
}

// benchHost is a host with a resolver, for the hostcalls plugin with every
// capability.
func benchHost(b *testing.B) *Host { return dnsHost(b, dnstest.Start(b, dnsZone)) }

// The data stage without host calls: the message's size makes no
// difference, since plugins get it by reference.
func BenchmarkDataStageNoReads1KiB(b *testing.B) {
	benchCommands(b, benchHost(b), benchMessage(1<<10), "", "")
}

func BenchmarkDataStageNoReads1MiB(b *testing.B) {
	benchCommands(b, benchHost(b), benchMessage(1<<20), "", "")
}

// The host functions, each called 1000 times in one plugin call by a
// guest loop that does nothing else, so that the call's own cost is spread
// thin: ns/op divided by 1000, less "none"'s, is one host call.
func BenchmarkHostCalls(b *testing.B) {
	h := benchHost(b)
	NewChain(load(b, h, hostcallsSpec(b, "hc", allCaps))).Run(context.Background(),
		&abi.Request{Stage: abi.StageMail, Helo: "kvset k value 3600000"}, nil)
	for _, bc := range []struct{ name, command, want string }{
		{"none", "hot 1000 none", "n=0"},
		{"body_size", "hot 1000 bodysize", "n=1024"},
		{"header_get", "hot 1000 header", "n=11"},
		{"kv_get", "hot 1000 kvget", "n=5"},
		{"counter_add", "hot 1000 count", "n=0"},
		// Answered again from the call's last answer after the first.
		{"dns_lookup_repeat", "hot 1000 dns", "n=23"},
	} {
		b.Run(bc.name, func(b *testing.B) { benchCommands(b, h, benchMessage(1<<10), bc.command, bc.want) })
	}
}

// One cached DNS lookup per plugin call, each call with a fresh budget.
func BenchmarkDNSLookupCached(b *testing.B) {
	benchCommands(b, benchHost(b), benchMessage(1<<10), "hot 1 dns", "n=23")
}

// Reading a whole 64 KiB body in 16 KiB chunks.
func BenchmarkBodyRead64KiB(b *testing.B) {
	benchCommands(b, benchHost(b), benchMessage(64<<10), "bodyall 16384", "total=65536")
}

func BenchmarkMemoryKV(b *testing.B) {
	kv := NewMemoryKV(MemoryKVConfig{})
	ctx := context.Background()
	value := []byte("a value of some bytes")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			key := "key" + string(rune('a'+i%26))
			kv.Set(ctx, "p", key, value, 3600e9)
			kv.Get(ctx, "p", key)
			i++
		}
	})
}
