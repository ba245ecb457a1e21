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
