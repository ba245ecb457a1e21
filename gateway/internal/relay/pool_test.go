package relay

import (
	"context"
	"strings"
	"testing"
)

// A go-smtp destination answers a line over its limit in the middle of
// DATA (554), then reads the rest of the message as commands and answers
// them "500 5.4.0 Too long line". That 500 belongs to the message before:
// the next transaction on the host must get the destination's answer to
// its own MAIL FROM, with or without idle connections.
func TestReplyMidDataIsNotTheNextSendersAnswer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxIdle int
	}{
		{"pooled", 0},
		{"no pool", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			d := newDestination()
			d.serve(t, lns...)
			r := newTestRelay(t, port, oneMX(t, "127.0.0.2"), func(c *Config) { c.MaxIdle = tc.maxIdle })
			ctx := context.Background()
			txn, rcptErr, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, "one@real.test")
			if err != nil || rcptErr != nil {
				t.Fatalf("Begin: %v, RCPT: %v", err, rcptErr)
			}
			long := "Subject: long\r\n\r\n" + strings.Repeat("x", 3000) + "\r\n"
			ok, err := txn.Data(ctx, []byte(long))
			if ok != nil || asReply(t, err).Code/100 != 5 {
				t.Fatalf("Data of a line over the destination's limit: %v, %v; want its 5xx", ok, err)
			}
			txn.Close()

			_, ok = send(t, r, "example.test", "b@fwd.test", "two@real.test", testMessage)
			if ok.Code != 250 {
				t.Errorf("next message: %d %q, want 250", ok.Code, ok.Message)
			}
			if got := d.deliveries(); len(got) != 1 || got[0].from != "b@fwd.test" {
				t.Errorf("deliveries = %+v, want the second message only", got)
			}
		})
	}
}

// Whatever a destination sends out of turn after a message, the next
// transaction to that host gets the destination's answer to its own
// commands: here 250, never a reply that belongs to the message before.
// The stray replies are mostly 2xx, which the rule for a reused
// connection's first reply (only 2xx is believed) does not catch: each of
// those cases shows one other defence at work. A stray 2xx taken for the
// answer to MAIL FROM shifts every reply after it by one, and DATA then
// gets 250 instead of 354.
func TestRepliesOutOfTurnNeverAnswerTheNextTransaction(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mx       func() *rawMX
		firstErr int // the first message's reply, if not 250
	}{
		// The message is refused before its end, and the destination
		// reads the rest as commands: a line "NOOP" gets 250, late.
		// Shown by: a connection whose message was refused is not kept.
		{name: "an early refusal, then a late reply to the rest of the message",
			mx:       func() *rawMX { return &rawMX{dataReply: "554 5.6.0 line too long\r\n", beforeNext: "250 2.0.0 Ok\r\n"} },
			firstErr: 554},
		// Shown by: a connection with unread bytes is not kept.
		{name: "two replies to the end of data, in one write",
			mx: func() *rawMX { return &rawMX{dataReply: "250 2.0.0 queued as X\r\n250 2.0.0 queued twice\r\n"} }},
		// Shown by: a connection with bytes waiting on its socket is not
		// reused.
		{name: "a second reply to the end of data, while idle",
			mx: func() *rawMX { return &rawMX{afterReply: "250 2.0.0 queued twice\r\n"} }},
		// Shown by: a closed connection is not reused, or its failure is
		// retried on a fresh one.
		{name: "a close after replying",
			mx: func() *rawMX { return &rawMX{hangUp: true} }},
		{name: "a reply and a close while idle",
			mx: func() *rawMX {
				return &rawMX{afterReply: "421 4.4.2 mx.dest.test closing idle connection\r\n", hangUp: true}
			}},
		// Shown by: on a reused connection, a refusal of MAIL FROM is
		// retried on a fresh connection, not passed on.
		{name: "a late refusal, after the next transaction began",
			mx: func() *rawMX { return &rawMX{beforeNext: "500 5.4.0 Too long line\r\n"} }},
	} {
		for _, ehlo := range []string{ehloPipelining, ehloPlain} {
			name := tc.name
			if ehlo == ehloPlain {
				name += ", without pipelining"
			}
			t.Run(name, func(t *testing.T) {
				port, lns := listenSamePort(t, "127.0.0.2")
				d := tc.mx()
				d.ehlo, d.replied, d.idle = ehlo, make(chan struct{}), make(chan struct{})
				d.serve(t, lns[0])
				r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
				ctx := context.Background()

				txn, rcptErr, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, "one@real.test")
				if err != nil || rcptErr != nil {
					t.Fatalf("Begin: %v, RCPT: %v", err, rcptErr)
				}
				ok, err := txn.Data(ctx, []byte(testMessage))
				switch {
				case tc.firstErr == 0 && (err != nil || ok.Code != 250):
					t.Fatalf("first message: %v, %v; want 250", ok, err)
				case tc.firstErr != 0 && (ok != nil || asReply(t, err).Code != tc.firstErr):
					t.Fatalf("first message: %v, %v; want %d", ok, err, tc.firstErr)
				}
				txn.Close()
				close(d.idle)
				<-d.replied

				txn, rcptErr, err = r.Begin(ctx, "example.test", "b@fwd.test", nil, "two@real.test")
				if err != nil || rcptErr != nil {
					t.Fatalf("next transaction: Begin: %v, RCPT: %v; want 250s", err, rcptErr)
				}
				ok, err = txn.Data(ctx, []byte(testMessage))
				if err != nil || ok.Code != 250 || ok.Message != "queued as X" {
					t.Fatalf("next message: %v, %v; want 250 queued as X", ok, err)
				}
				txn.Close()
			})
		}
	}
}
