package resolver

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// rawServer is a UDP DNS server on loopback whose replies the test builds
// byte for byte, to produce answers no well-behaved server (dnstest) gives.
// A nil reply sends nothing.
func rawServer(t *testing.T, reply func(q *dns.Msg) []byte) (addr string, received *atomic.Int32) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	received = new(atomic.Int32)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			received.Add(1)
			if b := reply(q); b != nil {
				pc.WriteTo(b, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().String(), received
}

// pack builds a reply to q, lets edit change it, and packs it.
func pack(t *testing.T, q *dns.Msg, edit func(m *dns.Msg)) []byte {
	m := new(dns.Msg)
	m.SetReply(q)
	edit(m)
	b, err := m.Pack()
	if err != nil {
		t.Error(err)
	}
	return b
}

func TestBadAnswers(t *testing.T) {
	tests := []struct {
		name  string
		reply func(t *testing.T, q *dns.Msg) []byte
		want  string
	}{
		{"garbage", func(t *testing.T, q *dns.Msg) []byte {
			// The right ID and a header promising records that are not there.
			return append([]byte{byte(q.Id >> 8), byte(q.Id), 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0}, "\x07garbage"...)
		}, "dns:"},
		{"other question", func(t *testing.T, q *dns.Msg) []byte {
			return pack(t, q, func(m *dns.Msg) { m.Question[0].Name = "other.test." })
		}, "response is for other.test."},
		{"wrong type", func(t *testing.T, q *dns.Msg) []byte {
			return pack(t, q, func(m *dns.Msg) {
				rr, _ := dns.NewRR(q.Question[0].Name + " 300 IN A 192.0.2.1")
				m.Answer = append(m.Answer, rr)
			})
		}, "A record for"},
		{"not a response", func(t *testing.T, q *dns.Msg) []byte {
			return pack(t, q, func(m *dns.Msg) { m.Response = false })
		}, "not a response"},
		{"CNAME loop", func(t *testing.T, q *dns.Msg) []byte {
			return pack(t, q, func(m *dns.Msg) {
				a, _ := dns.NewRR(q.Question[0].Name + " 300 IN CNAME loop.test.")
				b, _ := dns.NewRR("loop.test. 300 IN CNAME " + q.Question[0].Name)
				m.Answer = append(m.Answer, a, b)
			})
		}, "CNAME chain too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := rawServer(t, func(q *dns.Msg) []byte { return tc.reply(t, q) })
			r := newResolver(t, Config{Timeout: 2 * time.Second, Attempts: 1}, addr)
			mxs, err := r.LookupMX(context.Background(), "bad.test.")
			if err == nil {
				t.Fatalf("bad answer accepted: %v", mxs)
			}
			de := dnsError(t, err)
			if !de.IsTemporary || de.IsNotFound || de.IsTimeout {
				t.Errorf("%+v, want IsTemporary only", de)
			}
			if !strings.Contains(de.Err, tc.want) {
				t.Errorf("error %q does not say %q", de.Err, tc.want)
			}
		})
	}
}

func TestConcurrentLookupsShareOneQuery(t *testing.T) {
	release := make(chan struct{})
	addr, received := rawServer(t, func(q *dns.Msg) []byte {
		<-release
		return pack(t, q, func(m *dns.Msg) {
			rr, _ := dns.NewRR(q.Question[0].Name + " 300 IN MX 10 mx.shared.test.")
			m.Answer = append(m.Answer, rr)
		})
	})
	r := newResolver(t, Config{Timeout: 30 * time.Second}, addr)

	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			mxs, err := r.LookupMX(context.Background(), "shared.test.")
			if err == nil && (len(mxs) != 1 || mxs[0].Host != "mx.shared.test.") {
				err = errors.New("wrong answer")
			}
			errs <- err
		})
	}
	// Hold the answer a while so that, if queries were not shared, the
	// other lookups would send their own.
	for received.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := received.Load(); n != 1 {
		t.Fatalf("server received %d queries for 10 concurrent lookups, want 1", n)
	}
}

func TestEDNS0AndRecursionDesired(t *testing.T) {
	queries := make(chan *dns.Msg, 1)
	addr, _ := rawServer(t, func(q *dns.Msg) []byte {
		queries <- q
		return pack(t, q, func(m *dns.Msg) {})
	})
	r := newResolver(t, Config{}, addr)
	if _, err := r.LookupTXT(context.Background(), "edns.test"); err != nil {
		t.Fatal(err)
	}
	got := <-queries
	if !got.RecursionDesired {
		t.Error("RD not set")
	}
	if opt := got.IsEdns0(); opt == nil || opt.UDPSize() != 1232 {
		t.Errorf("EDNS0 = %v, want a 1232-byte buffer", opt)
	}
}
