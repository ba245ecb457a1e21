package queue

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// BenchmarkEnqueue measures durable enqueues of 4 KiB messages from 32
// goroutines. Commit 47d7773 ran it against bbolt too (RATIONALE.md,
// "The queue's store").
func BenchmarkEnqueue(b *testing.B) {
	data := bytes.Repeat([]byte("0123456789abcdef0123456789abcde\r\n"), 4096/33)
	q, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := &Message{Kind: Forward, From: "a@example.org", Data: data,
				Recipients: []Recipient{{Orig: "x@example.com", To: "y@example.net"}}}
			if err := q.Enqueue(context.Background(), m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
