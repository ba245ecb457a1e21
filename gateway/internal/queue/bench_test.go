package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkEnqueue measures durable enqueues of 4 KiB messages from 32
// goroutines: the queue's store (files, fsync, rename) against bbolt,
// whose Batch turns concurrent writers into one transaction and one
// fsync (RATIONALE.md, "The queue's store").
func BenchmarkEnqueue(b *testing.B) {
	data := bytes.Repeat([]byte("0123456789abcdef0123456789abcde\r\n"), 4096/33)
	msg := func() *Message {
		return &Message{Kind: Forward, From: "a@example.org", Data: data,
			Recipients: []Recipient{{Orig: "x@example.com", To: "y@example.net"}}}
	}
	var files, bbolt float64
	b.Run("files", func(b *testing.B) {
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
				if err := q.Enqueue(context.Background(), msg()); err != nil {
					b.Error(err)
					return
				}
			}
		})
		files = float64(b.N) / time.Since(start).Seconds()
		b.ReportMetric(files, "msgs/s")
	})
	b.Run("bbolt", func(b *testing.B) {
		db, err := bolt.Open(filepath.Join(b.TempDir(), "queue.db"), 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucket([]byte("data")); err != nil {
				return err
			}
			_, err := tx.CreateBucket([]byte("state"))
			return err
		}); err != nil {
			b.Fatal(err)
		}
		var n atomic.Int64
		b.SetParallelism(32)
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m := msg()
				m.ID = newID(time.Now()) + string(rune('a'+n.Add(1)%26))
				st := *m
				st.Data = nil
				sb, _ := json.Marshal(&st)
				if err := db.Batch(func(tx *bolt.Tx) error {
					if err := tx.Bucket([]byte("data")).Put([]byte(m.ID), m.Data); err != nil {
						return err
					}
					return tx.Bucket([]byte("state")).Put([]byte(m.ID), sb)
				}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		bbolt = float64(b.N) / time.Since(start).Seconds()
		b.ReportMetric(bbolt, "msgs/s")
	})
	if files > 0 {
		b.Logf("bbolt/files = %.2f", bbolt/files)
	}
}
