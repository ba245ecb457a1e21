package relay

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

const (
	ehloPipelining = "250-mx.dest.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
	ehloPlain      = "250-mx.dest.test\r\n250 8BITMIME\r\n"
)

// With PIPELINING, MAIL FROM and the first RCPT TO leave in one write;
// without it, RCPT TO waits for the reply to MAIL FROM.
func TestPipelinesMailAndFirstRcpt(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ehlo       string
		pipelining bool
	}{
		{"offered", ehloPipelining, true},
		{"offered in lower case", "250-mx.dest.test\r\n250-8bitmime\r\n250 pipelining\r\n", true},
		{"not offered", ehloPlain, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			d := &rawMX{ehlo: tc.ehlo}
			d.serve(t, lns[0])
			r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
			send(t, r, "example.test", "a@fwd.test", "one@real.test", testMessage)

			read := d.readWith(t, "MAIL FROM:")
			together := strings.Contains(read, "RCPT TO:<one@real.test>")
			if together != tc.pipelining {
				t.Errorf("MAIL FROM arrived as %q: RCPT TO in the same write = %v, want %v", read, together, tc.pipelining)
			}
			want := []string{"EHLO sluice.test", "MAIL FROM:<a@fwd.test> BODY=8BITMIME", "RCPT TO:<one@real.test>", "DATA", "<message>"}
			if got := d.commands(); !slices.Equal(got, want) {
				t.Errorf("commands = %q, want %q", got, want)
			}
		})
	}
}

// A transaction left open is reset on the connection's next use, with
// RSET in the same write as MAIL FROM and RCPT TO.
func TestPipelinesPendingReset(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := &rawMX{ehlo: ehloPipelining, replies: map[string]string{"RCPT": "550 5.1.1 no such user\r\n"}}
	d.serve(t, lns[0])
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	ctx := context.Background()
	for _, to := range []string{"first@real.test", "second@real.test"} {
		txn, rcptErr, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, to)
		if err != nil {
			t.Fatal(err)
		}
		if reply := asReply(t, rcptErr); reply.Code != 550 {
			t.Errorf("RCPT reply = %+v, want the destination's 550", reply)
		}
		txn.Close()
	}
	if read := d.readWith(t, "RSET"); !strings.HasPrefix(read, "RSET\r\nMAIL FROM:<a@fwd.test>") ||
		!strings.HasSuffix(read, "RCPT TO:<second@real.test>\r\n") {
		t.Errorf("the second transaction began as %q, want RSET, MAIL FROM and RCPT TO in one write", read)
	}
	want := []string{"EHLO sluice.test",
		"MAIL FROM:<a@fwd.test> BODY=8BITMIME", "RCPT TO:<first@real.test>",
		"RSET", "MAIL FROM:<a@fwd.test> BODY=8BITMIME", "RCPT TO:<second@real.test>"}
	if got := d.commands(); !slices.Equal(got, want) {
		t.Errorf("commands = %q, want %q (one connection)", got, want)
	}
}

// A 4xx to a pipelined MAIL FROM sends the transaction to the next MX,
// as without pipelining; the 503 the pipelined RCPT TO then gets is the
// expected consequence, not the answer. A 5xx to MAIL FROM is final.
func TestPipelinedMailRefusal(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mail      string
		wantFinal *smtp.SMTPError
	}{
		{"4xx fails over", "451 4.3.0 try later\r\n", nil},
		{"5xx is final", "550 5.7.1 sender refused\r\n",
			&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2", "127.0.0.3")
			first := &rawMX{ehlo: ehloPipelining, replies: map[string]string{
				"MAIL": tc.mail, "RCPT": "503 5.5.1 need MAIL first\r\n"}}
			first.serve(t, lns[0])
			backup := newDestination()
			backup.serve(t, lns[1])
			r := newTestRelay(t, port, dnsFor(t, twoMX))

			txn, rcptErr, err := r.Begin(context.Background(), "example.test", "a@fwd.test", nil, "one@real.test")
			if tc.wantFinal != nil {
				sameReply(t, err, tc.wantFinal)
				if backup.acceptedConns() != 0 {
					t.Error("the backup MX was contacted after a 5xx to MAIL FROM")
				}
			} else {
				if err != nil || rcptErr != nil {
					t.Fatalf("Begin: %v, RCPT: %v", err, rcptErr)
				}
				if !strings.HasPrefix(txn.Remote(), "mx2.example.test") {
					t.Errorf("Remote() = %q, want the backup MX", txn.Remote())
				}
				if _, err := txn.Data(context.Background(), []byte(testMessage)); err != nil {
					t.Fatal(err)
				}
				txn.Close()
				if got := backup.deliveries(); len(got) != 1 || !slices.Equal(got[0].to, []string{"one@real.test"}) {
					t.Errorf("backup MX deliveries = %+v, want one to one@real.test", got)
				}
			}
			if read := first.readWith(t, "MAIL FROM:"); !strings.Contains(read, "RCPT TO:") {
				t.Errorf("MAIL FROM arrived as %q, without the pipelined RCPT TO", read)
			}
			// Refused MAIL and RCPT leave the first MX's connection in a
			// known state: it is kept for the next message.
			if _, ok := r.pool.idle["mx1.example.test"]; !ok {
				t.Error("the first MX's connection was not kept")
			}
		})
	}
}

// A refused pipelined MAIL FROM whose RCPT TO was accepted leaves the
// server in a state nobody knows: the connection is closed, not kept.
func TestPipelinedRcptAcceptedWithoutMailIsNotKept(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2", "127.0.0.3")
	first := &rawMX{ehlo: ehloPipelining, replies: map[string]string{"MAIL": "451 4.3.0 try later\r\n"}}
	first.serve(t, lns[0])
	backup := newDestination()
	backup.serve(t, lns[1])
	r := newTestRelay(t, port, dnsFor(t, twoMX))
	txn, _, err := r.Begin(context.Background(), "example.test", "a@fwd.test", nil, "one@real.test")
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if _, ok := r.pool.idle["mx1.example.test"]; ok {
		t.Error("a connection whose RCPT TO was accepted after a refused MAIL FROM was kept")
	}
}

// MAIL FROM carries the parameters the options ask for, each only when
// the destination offers its extension.
func TestMailParameters(t *testing.T) {
	opts := &smtp.MailOptions{Size: 1234, UTF8: true, Return: smtp.DSNReturnHeaders, EnvelopeID: "id+1"}
	for _, tc := range []struct {
		name, ehlo, want string
	}{
		{"all offered", "250-mx.dest.test\r\n250-8BITMIME\r\n250-SIZE 100000\r\n250-SMTPUTF8\r\n250 DSN\r\n",
			"MAIL FROM:<jörg@fwd.test> BODY=8BITMIME SIZE=1234 SMTPUTF8 RET=HDRS ENVID=id+2B1"},
		{"only SMTPUTF8", "250-mx.dest.test\r\n250 SMTPUTF8\r\n", "MAIL FROM:<jörg@fwd.test> SMTPUTF8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			d := &rawMX{ehlo: tc.ehlo}
			d.serve(t, lns[0])
			r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
			txn, _, err := r.Begin(context.Background(), "example.test", "jörg@fwd.test", opts, "one@real.test")
			if err != nil {
				t.Fatal(err)
			}
			txn.Close()
			if got := d.commands(); len(got) < 2 || got[1] != tc.want {
				t.Errorf("commands = %q, want MAIL FROM as %q", got, tc.want)
			}
		})
	}
}

// A destination that does not know EHLO gets HELO, and is taken to offer
// no extension: no pipelining, no parameters.
func TestHeloFallback(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := &rawMX{ehlo: "502 5.5.2 command not recognized\r\n"}
	d.serve(t, lns[0])
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	send(t, r, "example.test", "a@fwd.test", "one@real.test", testMessage)
	want := []string{"EHLO sluice.test", "HELO sluice.test", "MAIL FROM:<a@fwd.test>", "RCPT TO:<one@real.test>", "DATA", "<message>"}
	if got := d.commands(); !slices.Equal(got, want) {
		t.Errorf("commands = %q, want %q", got, want)
	}
}

// Bytes the destination sends after agreeing to STARTTLS and before the
// handshake are an attack on the TLS session (CVE-2011-0411): they are
// never read as replies, and the mail goes in plaintext on a new
// connection, as after any failed handshake.
func TestStartTLSInjectionIsRefused(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := &rawMX{ehlo: "250-mx.dest.test\r\n250 STARTTLS\r\n",
		replies: map[string]string{"STARTTLS": "220 go ahead\r\n250 2.1.0 injected\r\n"}}
	d.serve(t, lns[0])
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	txn, _ := send(t, r, "example.test", "a@fwd.test", "one@real.test", testMessage)
	want := []string{"EHLO sluice.test", "STARTTLS", "EHLO sluice.test", "MAIL FROM:<a@fwd.test>", "RCPT TO:<one@real.test>", "DATA", "<message>"}
	if got := d.commands(); txn.TLS() || !slices.Equal(got, want) {
		t.Errorf("TLS() = %v, commands = %q; want plaintext and %q", txn.TLS(), got, want)
	}
}
