package relay

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// utf8Message has UTF-8 header fields (RFC 6532): it needs SMTPUTF8.
const utf8Message = "From: Pelé <pelé@origin.test>\r\nTo: piñata@example.test\r\nSubject: ¡piñata!\r\n\r\nOlá.\r\n"

// SMTPUTF8 is asked for only where the message may need it and the
// destination offers it; without it, the addresses go with A-label
// domains, and what would need it is refused before it is sent, never
// mangled: an address at MAIL or RCPT (553 5.6.7), a UTF-8 header at DATA
// (553 5.6.7).
func TestSMTPUTF8OnlyWhereNeeded(t *testing.T) {
	type step struct {
		from     string
		mayNeed  bool // the client said SMTPUTF8
		to       []string
		msg      string
		wantErr  string // the refusal, at the step it happens; "" for none
		wantUTF8 bool
		wantFrom string
		wantTo   []string
	}
	cases := []struct {
		name    string
		offered bool
		step
	}{
		{"said SMTPUTF8, needs nothing, not offered: sent without, domains as A-labels", false,
			step{from: "alice@piñata.example", mayNeed: true, to: []string{"me@piñata.example", "you@example.test"}, msg: testMessage,
				wantFrom: "alice@xn--piata-pta.example", wantTo: []string{"me@xn--piata-pta.example", "you@example.test"}}},
		{"said SMTPUTF8, offered: sent with, addresses intact", true,
			step{from: "alice@piñata.example", mayNeed: true, to: []string{"piñata@piñata.example"}, msg: utf8Message,
				wantUTF8: true, wantFrom: "alice@piñata.example", wantTo: []string{"piñata@piñata.example"}}},
		{"a UTF-8 recipient from routing, offered: sent with, though the client did not say it", true,
			step{from: "alice@origin.test", to: []string{"piñata@example.test"}, msg: testMessage,
				wantUTF8: true, wantFrom: "alice@origin.test", wantTo: []string{"piñata@example.test"}}},
		{"nothing needed, offered: sent without", true,
			step{from: "alice@origin.test", to: []string{"me@example.test"}, msg: testMessage,
				wantFrom: "alice@origin.test", wantTo: []string{"me@example.test"}}},
		{"a UTF-8 sender, not offered", false,
			step{from: "SRS0=AbCd=T5=origin.test=pelé@fwd.test", mayNeed: true, to: []string{"me@example.test"}, wantErr: "MAIL 553 5.6.7"}},
		{"a UTF-8 first recipient, not offered", false,
			step{from: "alice@origin.test", mayNeed: true, to: []string{"piñata@example.test"}, wantErr: "MAIL 553 5.6.7"}},
		{"a UTF-8 later recipient, not offered", false,
			step{from: "alice@origin.test", mayNeed: true, to: []string{"me@example.test", "piñata@example.test"}, wantErr: "RCPT 553 5.6.7"}},
		{"a UTF-8 header, not offered", false,
			step{from: "alice@origin.test", mayNeed: true, to: []string{"me@example.test"}, msg: utf8Message, wantErr: "DATA 553 5.6.7"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			d := newDestination()
			d.server.EnableSMTPUTF8 = c.offered
			d.serve(t, lns...)
			r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
			ctx := context.Background()
			refused := func(stage string, err error) bool {
				if err == nil {
					return false
				}
				reply := asReply(t, err)
				got := fmt.Sprintf("%s %d %d.%d.%d", stage, reply.Code, reply.EnhancedCode[0], reply.EnhancedCode[1], reply.EnhancedCode[2])
				if got != c.wantErr || !strings.Contains(reply.Message, "does not support SMTPUTF8") {
					t.Errorf("%s: %s %q, want %s", stage, got, reply.Message, c.wantErr)
				}
				return true
			}
			txn, rcptErr, err := r.Begin(ctx, "example.test", c.from, &smtp.MailOptions{UTF8: c.mayNeed}, c.to[0])
			if refused("MAIL", err) {
				return
			}
			if rcptErr != nil {
				t.Fatal(rcptErr)
			}
			defer txn.Close()
			for _, to := range c.to[1:] {
				if refused("RCPT", txn.Rcpt(ctx, to)) {
					return
				}
			}
			if _, err := txn.Data(ctx, []byte(c.msg)); refused("DATA", err) {
				// Nothing was sent, and the connection is still good for
				// the next message.
				txn.Close()
				if n := len(d.deliveries()); n != 0 {
					t.Errorf("%d messages delivered, want none", n)
				}
				next, rcptErr, err := r.Begin(ctx, "example.test", "alice@origin.test", nil, "me@example.test")
				if err != nil || rcptErr != nil {
					t.Fatal(err, rcptErr)
				}
				defer next.Close()
				if _, err := next.Data(ctx, []byte(testMessage)); err != nil || d.acceptedConns() != 1 {
					t.Errorf("next message: %v, on %d connections, want delivered on the same one", err, d.acceptedConns())
				}
				return
			}
			if c.wantErr != "" {
				t.Fatalf("delivered, want %s", c.wantErr)
			}
			got := d.deliveries()
			if len(got) != 1 || got[0].utf8 != c.wantUTF8 || got[0].from != c.wantFrom || !slices.Equal(got[0].to, c.wantTo) || got[0].data != c.msg {
				t.Errorf("deliveries = %+v, want one with SMTPUTF8 %v from %q to %q, the message intact", got, c.wantUTF8, c.wantFrom, c.wantTo)
			}
		})
	}
}
