package gateway_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// memoryInUse is the heap and the goroutine stacks of this process (the
// gateway under test and its clients) after a garbage collection.
func memoryInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// readToEnd reads what the server still sends until it closes the
// connection, and returns the last line; "" if it did not close in time.
func readToEnd(c net.Conn, within time.Duration) (last string, closed bool) {
	c.SetReadDeadline(time.Now().Add(within))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			last = strings.TrimRight(line, "\r\n")
		}
		if err == io.EOF {
			return last, true
		}
		if err != nil {
			// A reset after the farewell is a close too.
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return last, false
			}
			return last, true
		}
	}
}

// A flood of commands go-smtp does not know ends with 421 and a closed
// connection (RFC 5321 §3.8: a server closes only after 421), after three
// tolerated mistakes, and a log line.
func TestBadCommandFloodEndsWith421(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := rawConn(t, e.addr, "")
	c.Write([]byte(strings.Repeat("XYZZY plugh\r\n", 50)))
	var replies []string
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			break
		}
		replies = append(replies, strings.TrimRight(line, "\r\n"))
	}
	if len(replies) == 0 || len(replies) > 6 {
		t.Fatalf("replies to 50 bad commands: %q; want a few, then a close", replies)
	}
	if last := replies[len(replies)-1]; !strings.HasPrefix(last, "421 4.7.0 mx.ours.test ") {
		t.Errorf("last reply %q, want 421 4.7.0 with our name", last)
	}
	for _, r := range replies[:len(replies)-1] {
		if !strings.HasPrefix(r, "500 5.5.2 ") && !strings.HasPrefix(r, "501 5.5.2 ") {
			t.Errorf("reply %q to an unknown command, want 500 or 501 5.5.2", r)
		}
	}
	// No session had started, but the end is logged.
	lines := logLines(t, e.logs.String(), "session ended: too many errors")
	if len(lines) != 1 {
		t.Fatalf("%d lines session ended: too many errors, want 1", len(lines))
	}
	wantAttrs(t, "bad command flood", lines[0], map[string]string{"client": "127.0.0.1", "session": absent,
		"reply": "421 4.7.0 mx.ours.test Error: too many errors, closing connection"})
	// The gateway still serves.
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Errorf("after the flood: %v", err)
	}
}

// Inside TLS, go-smtp's own farewell cannot be rewritten (it is written
// under the encryption), but the flood still ends with a closed
// connection.
func TestBadCommandFloodInTLSIsClosed(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := rawConn(t, e.addr, "")
	for _, cmd := range []string{"EHLO sender.example.org", "STARTTLS"} {
		c.send(cmd)
		if got := c.reply(); got[0] != '2' {
			t.Fatalf("%s: %q", cmd, got)
		}
	}
	tc := tls.Client(c.Conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.Write([]byte("EHLO sender.example.org\r\n" + strings.Repeat("XYZZY plugh\r\n", 50)))
	if last, closed := readToEnd(tc, 5*time.Second); !closed || !strings.HasPrefix(last, "500 5.5.1") && !strings.HasPrefix(last, "421 ") {
		t.Errorf("after 50 bad commands in TLS: last %q, closed %v", last, closed)
	}
}

// Refused commands (relay attempts, unknown recipients, bad senders) count
// as errors: after max_errors of them the client is told 421 and the
// connection closes, as Postfix's smtpd_hard_error_limit does, so that a
// client cannot probe addresses or relays forever.
func TestRefusalFloodEndsWith421(t *testing.T) {
	e := startEnv(t, envOptions{smtp: "max_errors = 5"})
	c := rawConn(t, e.addr, "")
	for _, cmd := range []string{"EHLO sender.example.org", "MAIL FROM:<spammer@example.org>"} {
		c.send(cmd)
		if got := c.reply(); got[0] != '2' {
			t.Fatalf("%s: %q", cmd, got)
		}
	}
	var replies []string
	for i := range 4 {
		c.send(fmt.Sprintf("RCPT TO:<victim%d@other.test>", i))
		replies = append(replies, c.reply())
	}
	c.send("RCPT TO:<info@ours.test>") // a good one does not reset the count
	if got := c.reply(); !strings.HasPrefix(got, "250") {
		t.Fatalf("a good recipient: %q", got)
	}
	c.send("RCPT TO:<nobody@ours.test>")
	last, closed := readToEnd(c, 5*time.Second)
	for _, r := range replies {
		if !strings.HasPrefix(r, "550 5.7.1") {
			t.Errorf("relay attempt: %q, want 550 5.7.1", r)
		}
	}
	if !closed || !strings.HasPrefix(last, "421 4.7.0 mx.ours.test ") || !strings.Contains(last, "too many errors") {
		t.Errorf("fifth refusal: %q (closed %v), want 421 4.7.0 too many errors and a close", last, closed)
	}
	if n := len(e.dest.deliveries()); n != 0 {
		t.Errorf("%d messages delivered", n)
	}
}

// A recipient put off to the next transaction (over max_recipients) is
// no error of the client's, however many there are.
func TestDeferralsAreNotErrors(t *testing.T) {
	e := startEnv(t, envOptions{smtp: "max_errors = 3\nmax_recipients = 1"})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("info@ours.test", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		wantReply(t, "a recipient over max_recipients", c.Rcpt(fmt.Sprintf("info+%d@ours.test", i), nil),
			452, smtp.EnhancedCode{4, 5, 3}, "limit of 1 recipients")
	}
	if _, err := sendData(t, c, testMessage); err != nil {
		t.Errorf("after five deferrals: %v, want the message delivered", err)
	}
}

// Each limit on a message answers with its code; the session goes on
// when it can, and closes when what follows cannot be trusted.
func TestMessageLimits(t *testing.T) {
	e := startEnv(t, envOptions{smtp: `
max_message_size = 4000
max_line_length = 512
max_header_fields = 20
max_recipients = 3
`})
	transaction := func(t *testing.T, mail string) *rawClient {
		c := rawConn(t, e.addr, "")
		for _, cmd := range []string{"EHLO sender.example.org", mail, "RCPT TO:<info@ours.test>"} {
			c.send(cmd)
			if got := c.reply(); got[0] != '2' {
				t.Fatalf("%s: %q", cmd, got)
			}
		}
		return c
	}
	data := func(t *testing.T, c *rawClient, msg string) string {
		c.send("DATA")
		if got := c.reply(); !strings.HasPrefix(got, "354") {
			t.Fatalf("DATA: %q", got)
		}
		c.Write([]byte(strings.ReplaceAll(msg, "\r\n.", "\r\n..") + ".\r\n"))
		return c.reply()
	}
	// goesOn checks that the session still takes a message.
	goesOn := func(t *testing.T, c *rawClient) {
		t.Helper()
		for _, cmd := range []string{"MAIL FROM:<alice@example.org>", "RCPT TO:<info@ours.test>"} {
			c.send(cmd)
			if got := c.reply(); got[0] != '2' {
				t.Fatalf("after the refusal, %s: %q", cmd, got)
			}
		}
		if got := data(t, c, testMessage); !strings.HasPrefix(got, "250 ") {
			t.Errorf("after the refusal, a good message: %q", got)
		}
	}

	t.Run("declared size over the limit", func(t *testing.T) {
		c := rawConn(t, e.addr, "")
		c.send("EHLO sender.example.org")
		c.reply()
		c.send("MAIL FROM:<alice@example.org> SIZE=5000")
		if got := c.reply(); !strings.HasPrefix(got, "552 5.3.4") {
			t.Errorf("MAIL with SIZE over the limit: %q, want 552 5.3.4", got)
		}
	})
	t.Run("message over the size limit", func(t *testing.T) {
		c := transaction(t, "MAIL FROM:<alice@example.org>")
		got := data(t, c, "Subject: big\r\n\r\n"+strings.Repeat(strings.Repeat("x", 70)+"\r\n", 60))
		if !strings.HasPrefix(got, "552 5.3.4") {
			t.Errorf("oversize message: %q, want 552 5.3.4", got)
		}
		goesOn(t, c)
	})
	t.Run("too many recipients", func(t *testing.T) {
		c := transaction(t, "MAIL FROM:<alice@example.org>")
		for _, r := range []string{"info+a@ours.test", "info+b@ours.test"} {
			c.send("RCPT TO:<" + r + ">")
			c.reply()
		}
		c.send("RCPT TO:<info+c@ours.test>")
		if got := c.reply(); !strings.HasPrefix(got, "452 4.5.3") {
			t.Errorf("fourth recipient: %q, want 452 4.5.3", got)
		}
		if got := data(t, c, testMessage); !strings.HasPrefix(got, "250 ") {
			t.Errorf("the message to the first three: %q", got)
		}
	})
	t.Run("too many header fields", func(t *testing.T) {
		c := transaction(t, "MAIL FROM:<alice@example.org>")
		got := data(t, c, strings.Repeat("X-Field: x\r\n", 21)+"\r\nbody\r\n")
		if !strings.HasPrefix(got, "552 5.3.4") || !strings.Contains(got, "header fields") {
			t.Errorf("21 header fields: %q, want 552 5.3.4 about header fields", got)
		}
		goesOn(t, c)
	})
	t.Run("header fields at the limit", func(t *testing.T) {
		c := transaction(t, "MAIL FROM:<alice@example.org>")
		// Continuation lines are part of their field.
		msg := strings.Repeat("X-Field: x\r\n\tcontinued\r\n", 15) + "From: a@example.org\r\nTo: info@ours.test\r\n" +
			"Subject: twenty\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <20@example.org>\r\n\r\nbody\r\n"
		if got := data(t, c, msg); !strings.HasPrefix(got, "250 ") {
			t.Errorf("20 header fields: %q, want 250", got)
		}
	})
	t.Run("overlong line in the message", func(t *testing.T) {
		c := transaction(t, "MAIL FROM:<alice@example.org>")
		c.send("DATA")
		c.reply()
		// What follows the long line cannot be told from commands: the
		// connection closes after a permanent refusal.
		c.Write([]byte("Subject: long\r\n\r\n" + strings.Repeat("x", 600) + "\r\nRSET\r\n.\r\n"))
		last, closed := readToEnd(c, 5*time.Second)
		if !closed || !strings.HasPrefix(last, "554 5.6.0") || !strings.Contains(last, "longer than 512") {
			t.Errorf("overlong line: %q (closed %v), want 554 5.6.0 naming the limit, then a close", last, closed)
		}
	})
	t.Run("overlong command line", func(t *testing.T) {
		c := rawConn(t, e.addr, "")
		c.send("EHLO " + strings.Repeat("a", 600))
		last, closed := readToEnd(c, 5*time.Second)
		if !closed || !strings.HasPrefix(last, "500 5.4.0") {
			t.Errorf("overlong command: %q (closed %v), want 500 5.4.0, then a close", last, closed)
		}
	})
	if n := len(e.dest.deliveries()); n != 4 {
		t.Errorf("the destination has %d messages, want the 4 good ones", n)
	}
}

// A client that declares a large SIZE and then sends nothing must not
// make the gateway reserve that much memory for it.
func TestDeclaredSizeReservesNoMemory(t *testing.T) {
	e := startEnv(t, envOptions{smtp: `
max_message_size = "8MiB"
max_connections_per_ip = 100
`})
	const clients = 40
	before := memoryInUse()
	for range clients {
		c := rawConn(t, e.addr, "")
		for _, cmd := range []string{"EHLO sender.example.org", "MAIL FROM:<alice@example.org> SIZE=8000000", "RCPT TO:<info@ours.test>", "DATA"} {
			c.send(cmd)
			if got := c.reply(); got[0] != '2' && got[0] != '3' {
				t.Fatalf("%s: %q", cmd, got)
			}
		}
		c.Write([]byte("Subject: I will be big\r\n"))
	}
	// The server reads the message from its 354 on; give it a moment.
	var peak uint64
	for range 5 {
		time.Sleep(50 * time.Millisecond)
		peak = max(peak, memoryInUse())
	}
	grown := int64(peak) - int64(before)
	t.Logf("%d clients in DATA, each having declared 8 MB: %d KiB more in use", clients, grown>>10)
	if grown > 32<<20 {
		t.Errorf("%d clients that declared 8 MB each and sent a line made the process grow by %d MiB", clients, grown>>20)
	}
}

// Connection limits hold across all listeners together: max_connections
// is the gateway's, not each address's.
func TestConnectionLimitSpansListeners(t *testing.T) {
	e := startEnv(t, envOptions{listen: `["127.0.0.1:0", "[::1]:0"]`, smtp: `
max_connections = 2
max_connections_per_ip = 2
`})
	a := rawConn(t, e.addrs[0], "")
	b := rawConn(t, e.addrs[1], "")
	if !strings.HasPrefix(a.lastLine, "220") || !strings.HasPrefix(b.lastLine, "220") {
		t.Fatalf("first two: %q %q", a.lastLine, b.lastLine)
	}
	for _, addr := range e.addrs {
		c := rawConn(t, addr, "")
		if !strings.HasPrefix(c.lastLine, "421 4.7.0") || !strings.Contains(c.lastLine, "too many connections") {
			t.Errorf("a third connection, to %s: %q, want 421 4.7.0", addr, c.lastLine)
		}
	}
}

// A client that trickles a byte at a time is cut off at the command or
// data timeout, which bounds each line and each message, not each read.
func TestTricklingClientsAreCut(t *testing.T) {
	e := startEnv(t, envOptions{smtp: `
command_timeout = "1s"
data_timeout = "1s"
`})
	trickle := func(c *rawClient, stop chan struct{}) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}
	t.Run("command", func(t *testing.T) {
		c := rawConn(t, e.addr, "")
		stop := make(chan struct{})
		defer close(stop)
		go trickle(c, stop)
		if last, closed := readToEnd(c, 10*time.Second); !closed || !strings.HasPrefix(last, "421 4.4.2") {
			t.Errorf("a command line a byte at a time: %q (closed %v), want 421 4.4.2", last, closed)
		}
	})
	t.Run("data", func(t *testing.T) {
		c := rawConn(t, e.addr, "")
		for _, cmd := range []string{"EHLO sender.example.org", "MAIL FROM:<alice@example.org>", "RCPT TO:<info@ours.test>", "DATA"} {
			c.send(cmd)
			if got := c.reply(); got[0] != '2' && got[0] != '3' {
				t.Fatalf("%s: %q", cmd, got)
			}
		}
		stop := make(chan struct{})
		defer close(stop)
		go trickle(c, stop)
		if last, closed := readToEnd(c, 10*time.Second); !closed || !strings.HasPrefix(last, "421 4.4.2") {
			t.Errorf("a message a byte at a time: %q (closed %v), want 421 4.4.2", last, closed)
		}
	})
	if n := len(e.dest.deliveries()); n != 0 {
		t.Errorf("%d messages delivered", n)
	}
}

// A thousand connections from fifty addresses fill the gateway; half send
// nothing, half a byte at a time. They hold little memory each. Once the
// gateway is full it is under stress: every session then gets
// stress_timeout instead of command_timeout (five minutes here), so the
// idle and slow ones are cut within seconds and other clients are served.
func TestConnectionFloodUnderStress(t *testing.T) {
	if testing.Short() {
		t.Skip("opens a thousand connections")
	}
	e := startEnv(t, envOptions{smtp: `
max_connections = 1000
max_connections_per_ip = 20
stress_timeout = "1s"
`})
	before, goroutines := memoryInUse(), runtime.NumGoroutine()

	const addrs, perAddr = 50, 20
	var flood []*rawClient
	for a := range addrs {
		for range perAddr {
			c := rawConn(t, e.addr, fmt.Sprintf("127.0.1.%d", a+10))
			if !strings.HasPrefix(c.lastLine, "220") {
				t.Fatalf("flood connection %d: %q", len(flood), c.lastLine)
			}
			flood = append(flood, c)
		}
	}
	held := memoryInUse()
	perConn := (int64(held) - int64(before)) / int64(len(flood))
	t.Logf("%d connections hold %d KiB each (server and client sides)", len(flood), perConn>>10)
	if perConn > 64<<10 {
		t.Errorf("each idle connection holds %d KiB, want at most 64", perConn>>10)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range flood[len(flood)/2:] {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
					c.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	// Another client is turned away while the gateway is full, and served
	// once the flood has been cut.
	var refused int
	var served error = fmt.Errorf("never served")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := smtp.Dial(e.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("sender.example.org"); err != nil {
			// The greeting was 421: the gateway is full.
			c.Close()
			refused++
			continue
		}
		served = func() error {
			defer c.Close()
			if err := c.Mail("alice@example.org", nil); err != nil {
				return err
			}
			if err := c.Rcpt("info@ours.test", nil); err != nil {
				return err
			}
			w, err := c.Data()
			if err != nil {
				return err
			}
			io.WriteString(w, testMessage)
			return w.Close()
		}()
		break
	}
	if served != nil {
		t.Fatalf("another client during the flood: %v", served)
	}
	if refused == 0 {
		t.Error("the gateway was never full: the test did not fill it")
	}
	for i, c := range flood {
		last, closed := readToEnd(c, 10*time.Second)
		if !closed || !strings.HasPrefix(last, "421 4.4.2") {
			t.Fatalf("flood connection %d: %q (closed %v), want 421 4.4.2 and a close", i, last, closed)
		}
	}
	for _, c := range flood {
		c.Close()
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	var after uint64
	var g int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		after, g = memoryInUse(), runtime.NumGoroutine()
		if g <= goroutines+10 {
			break
		}
	}
	t.Logf("after the flood: %d goroutines (%d before), %d KiB more in use than before", g, goroutines, (int64(after)-int64(before))>>10)
	if g > goroutines+10 {
		t.Errorf("%d goroutines after the flood, %d before", g, goroutines)
	}
	if log := e.logs.String(); !strings.Contains(log, "connection limit reached") || !strings.Contains(log, "back to half the limit") {
		t.Errorf("the log does not say when the stress began and ended")
	}
	if int64(after)-int64(before) > 16<<20 {
		t.Errorf("%d MiB more in use after the flood than before", (int64(after)-int64(before))>>20)
	}
}

// RSET in the middle of a BDAT message abandons that message and keeps
// the session, as it does between commands (RFC 3030 §3). (Run with
// -race: go-smtp reads the message on a goroutine of its own and resets
// the session meanwhile.)
func TestBDATResetKeepsTheSession(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := rawConn(t, e.addr, "")
	for _, cmd := range []string{"EHLO sender.example.org", "MAIL FROM:<alice@example.org>", "RCPT TO:<info@ours.test>"} {
		c.send(cmd)
		if got := c.reply(); got[0] != '2' {
			t.Fatalf("%s: %q", cmd, got)
		}
	}
	part := "Subject: abandoned\r\n"
	fmt.Fprintf(c, "BDAT %d\r\n%s", len(part), part)
	if got := c.reply(); !strings.HasPrefix(got, "250") {
		t.Fatalf("first chunk: %q", got)
	}
	c.send("RSET")
	if got := c.reply(); !strings.HasPrefix(got, "250") {
		t.Fatalf("RSET mid-message: %q, want 250", got)
	}
	for _, cmd := range []string{"MAIL FROM:<alice@example.org>", "RCPT TO:<info@ours.test>"} {
		c.send(cmd)
		if got := c.reply(); got[0] != '2' {
			t.Fatalf("after RSET, %s: %q", cmd, got)
		}
	}
	// The next message goes by DATA: a second BDAT after RSET races, in
	// go-smtp v0.25, with the goroutine that served the first.
	c.send("DATA")
	c.reply()
	c.Write([]byte(strings.ReplaceAll(testMessage, "\r\n.", "\r\n..") + ".\r\n"))
	if got := c.reply(); !strings.HasPrefix(got, "250") {
		t.Fatalf("the next message: %q, want 250", got)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || !strings.HasSuffix(string(got[0].data), testMessage) {
		t.Errorf("deliveries: %d, want the second message only", len(got))
	}
}

// A failure of ours (a plugin's, answered 451 4.3.0 under its
// on_failure = "tempfail", as when its key-value store is down) is no
// error of the client's either: a client sending many messages in one
// session while it lasts is deferred each time, never cut off with 421.
func TestOurFailuresAreNotErrors(t *testing.T) {
	e := startEnv(t, envOptions{smtp: "max_errors = 3", plugins: failingChain(t, "tempfail")})
	c := e.client(t)
	for i := range 5 {
		if err := c.Mail("alice@example.org", nil); err != nil {
			t.Fatalf("MAIL %d: %v", i, err)
		}
		wantReply(t, "a recipient whose plugin fails", c.Rcpt("panic@ours.test", nil),
			451, smtp.EnhancedCode{4, 3, 0}, "Filter scripted failed, try again later")
		if err := c.Reset(); err != nil {
			t.Fatalf("RSET %d: %v", i, err)
		}
	}
	if err := sendMail(t, c, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Errorf("after five failures of ours: %v, want the message delivered", err)
	}
}

// Failures of ours still have a bound, max_errors times five refusals of
// any kind, so that a client cannot make the gateway call a failing
// plugin (or dial a destination that is down) without end in one session.
func TestOurFailuresHaveABound(t *testing.T) {
	e := startEnv(t, envOptions{smtp: "max_errors = 3", plugins: failingChain(t, "tempfail")})
	c := rawConn(t, e.addr, "")
	c.send("EHLO sender.example.org")
	if got := c.reply(); got[0] != '2' {
		t.Fatalf("EHLO: %q", got)
	}
	for i := range 14 {
		for _, cmd := range []string{"MAIL FROM:<alice@example.org>", "RCPT TO:<panic@ours.test>", "RSET"} {
			c.send(cmd)
			got := c.reply()
			if want := map[bool]string{true: "451 4.3.0", false: "250"}[strings.HasPrefix(cmd, "RCPT")]; !strings.HasPrefix(got, want) {
				t.Fatalf("round %d, %s: %q, want %s", i, cmd, got, want)
			}
		}
	}
	c.send("MAIL FROM:<alice@example.org>")
	if got := c.reply(); !strings.HasPrefix(got, "250") {
		t.Fatalf("MAIL: %q", got)
	}
	c.send("RCPT TO:<panic@ours.test>")
	last, closed := readToEnd(c, 5*time.Second)
	if !closed || !strings.HasPrefix(last, "421 4.7.0 mx.ours.test ") || !strings.Contains(last, "too many errors") {
		t.Errorf("fifteenth failure of ours at max_errors = 3: %q (closed %v), want 421 4.7.0 too many errors and a close", last, closed)
	}
}
