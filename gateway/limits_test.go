package gateway_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Every limit answers with the right code and keeps the gateway serving.
func TestLimits(t *testing.T) {
	e := startEnv(t, envOptions{smtp: `
max_recipients = 3
max_message_size = 2000
command_timeout = "1s"
max_line_length = 512
`})

	// The recipient over the limit is put off to another transaction, and
	// the refusal is logged and counted as the host's like any other.
	t.Run("recipients", func(t *testing.T) {
		c := e.client(t)
		if err := c.Mail("many@example.org", nil); err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{"info@ours.test", "info+a@ours.test", "info+b@ours.test"} {
			if err := c.Rcpt(r, nil); err != nil {
				t.Fatalf("RCPT %s: %v", r, err)
			}
		}
		wantReply(t, "fourth recipient", c.Rcpt("info+c@ours.test", nil), 452, smtp.EnhancedCode{4, 5, 3}, "limit of 3 recipients")
		c.Reset()
		wantAttrs(t, "too many recipients", txnLine(t, e, "many@example.org"), map[string]string{
			"rcpts":   "info@ours.test,info+a@ours.test,info+b@ours.test",
			"refused": "info+c@ours.test (host): 452 4.5.3 Maximum limit of 3 recipients reached",
		})
		if got := scrape(t, e)[`sluice_recipients_total{decided_by="host",outcome="tempfailed"}`]; got != 1 {
			t.Errorf(`sluice_recipients_total{decided_by="host",outcome="tempfailed"} = %v, want 1`, got)
		}
	})

	t.Run("size", func(t *testing.T) {
		c := e.client(t)
		if ok, size := c.Extension("SIZE"); !ok || size != "2000" {
			t.Errorf("SIZE = %q", size)
		}
		if err := c.Mail("alice@example.org", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("info@ours.test", nil); err != nil {
			t.Fatal(err)
		}
		_, err := sendData(t, c, "Subject: big\r\n\r\n"+strings.Repeat(strings.Repeat("x", 70)+"\r\n", 50))
		wantReply(t, "oversize message", err, 552, smtp.EnhancedCode{5, 3, 4}, "size")
		if n := len(e.dest.deliveries()); n != 0 {
			t.Errorf("an oversize message reached the destination (%d)", n)
		}
	})

	t.Run("line length", func(t *testing.T) {
		conn := rawConn(t, e.addr, "")
		conn.send("EHLO " + strings.Repeat("a", 600))
		if got := conn.reply(); !strings.HasPrefix(got, "500 5.4.0") {
			t.Errorf("overlong command: %q, want 500 5.4.0", got)
		}
	})

	t.Run("idle timeout", func(t *testing.T) {
		conn := rawConn(t, e.addr, "")
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got := conn.reply(); !strings.HasPrefix(got, "421 4.4.2") {
			t.Errorf("idle client: %q, want 421 4.4.2", got)
		}
	})
}

// Connections over the total or per-IP limit are answered 421 and closed,
// while other clients are still served. Each refusal is counted by the
// limit it met, and logged, at most once per limit in refusalLogEvery (10
// s). (Its own gateway: connections of other tests would count against
// the limits until the server sees them close.)
func TestConnectionLimits(t *testing.T) {
	e := startEnv(t, envOptions{smtp: `
max_connections = 4
max_connections_per_ip = 2
`})
	before := scrape(t, e)
	for _, reason := range []string{"max_connections", "max_connections_per_ip"} {
		key := fmt.Sprintf("sluice_connections_refused_total{reason=%q}", reason)
		if v, ok := before[key]; !ok || v != 0 {
			t.Errorf("at start %s = %v (present: %v), want 0", key, v, ok)
		}
	}
	a := rawConn(t, e.addr, "127.0.0.1")
	b := rawConn(t, e.addr, "127.0.0.1")
	over := rawConn(t, e.addr, "127.0.0.1")
	if got := over.lastLine; !strings.HasPrefix(got, "421 4.7.0") || !strings.Contains(got, "from 127.0.0.1") {
		t.Errorf("third connection from one IP: %q, want 421 4.7.0 naming the IP", got)
	}
	if got := rawConn(t, e.addr, "127.0.0.1").lastLine; !strings.HasPrefix(got, "421 4.7.0") {
		t.Errorf("fourth connection from one IP: %q, want 421 4.7.0", got)
	}
	// Other addresses are still served, up to the total.
	c := rawConn(t, e.addr, "127.0.0.2")
	d := rawConn(t, e.addr, "127.0.0.3")
	if !strings.HasPrefix(c.lastLine, "220") || !strings.HasPrefix(d.lastLine, "220") {
		t.Errorf("other clients: %q %q, want 220", c.lastLine, d.lastLine)
	}
	full := rawConn(t, e.addr, "127.0.0.4")
	if got := full.lastLine; !strings.HasPrefix(got, "421 4.7.0") || !strings.Contains(got, "too many connections") {
		t.Errorf("fifth connection in all: %q, want 421 4.7.0", got)
	}
	m := scrape(t, e)
	for reason, n := range map[string]float64{"max_connections": 1, "max_connections_per_ip": 2} {
		if key := fmt.Sprintf("sluice_connections_refused_total{reason=%q}", reason); m[key] != n {
			t.Errorf("%s = %v, want %v", key, m[key], n)
		}
	}
	// The second refusal from 127.0.0.1 came within 10 s of the first:
	// counted, not logged.
	lines := logLines(t, e.logs.String(), "connection refused")
	if len(lines) != 2 {
		t.Fatalf("%d lines connection refused, want 2 (one per limit): %v", len(lines), lines)
	}
	wantAttrs(t, "per-IP refusal", lines[0], map[string]string{"reason": "max_connections_per_ip", "client": "127.0.0.1",
		"reply": "421 4.7.0 mx.ours.test too many connections from 127.0.0.1, try again later", "not_logged": "0"})
	wantAttrs(t, "total refusal", lines[1], map[string]string{"reason": "max_connections", "client": "127.0.0.4",
		"reply": "421 4.7.0 mx.ours.test too many connections, try again later", "not_logged": "0"})
	// A closed connection gives its place back once the server has seen
	// it close; until then the client is refused, and may retry.
	a.Close()
	var last string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		again := rawConn(t, e.addr, "127.0.0.1")
		if last = again.lastLine; strings.HasPrefix(last, "220") {
			break
		}
		again.Close()
	}
	if !strings.HasPrefix(last, "220") {
		t.Errorf("after one closed: %q, want 220", last)
	}
	b.Close()
}

// A client on IPv6 is served like any other.
func TestListensOnIPv6(t *testing.T) {
	e := startEnv(t, envOptions{listen: `["127.0.0.1:0", "[::1]:0"]`})
	if len(e.addrs) != 2 || !strings.HasPrefix(e.addrs[1], "[::1]:") {
		t.Fatalf("listeners: %v", e.addrs)
	}
	if err := sendMail(t, dialClient(t, e.addrs[1]), "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || !strings.Contains(string(got[0].data), "([IPv6:::1])") {
		t.Errorf("the Received field should name the IPv6 client: %+v", got)
	}
}

// Internationalised addresses pass through with SMTPUTF8, and need it.
func TestSMTPUTF8(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.client(t)
	wantReply(t, "UTF-8 sender without SMTPUTF8", c.Mail("josé@example.org", nil), 553, smtp.EnhancedCode{5, 6, 7}, "SMTPUTF8")
	if err := c.Mail("josé@example.org", &smtp.MailOptions{UTF8: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("info@ours.test", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sendData(t, c, "From: josé@example.org\r\nSubject: café\r\n\r\nolá\r\n"); err != nil {
		t.Fatal(err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 || !got[0].utf8 || !strings.HasSuffix(got[0].from, "=josé@ours.test") {
		t.Errorf("delivery %+v: want SMTPUTF8 and the UTF-8 local part kept in the SRS address", got)
	}
}

// rawConn is a bare TCP client, for what go-smtp's client would not send.
type rawClient struct {
	net.Conn
	r        *bufio.Reader
	t        *testing.T
	lastLine string // the first reply (greeting or refusal)
}

func rawConn(t *testing.T, addr, from string) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{Conn: c, r: bufio.NewReader(c), t: t}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rc.lastLine = rc.reply()
	return rc
}

func (c *rawClient) send(line string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(line + "\r\n"))
}

// reply reads one whole reply and returns its last line.
func (c *rawClient) reply() string {
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return "read error: " + err.Error()
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

// A client that stalls in the middle of DATA is cut off with 421 and the
// connection is closed: what it sends later must never be read as
// commands, and nothing is delivered.
func TestDataTimeoutClosesTheConnection(t *testing.T) {
	e := startEnv(t, envOptions{smtp: `data_timeout = "1s"`})
	c := rawConn(t, e.addr, "")
	for _, cmd := range []string{"EHLO sender.example.org", "MAIL FROM:<alice@example.org>", "RCPT TO:<info@ours.test>", "DATA"} {
		c.send(cmd)
		if got := c.reply(); got[0] != '2' && got[0] != '3' {
			t.Fatalf("%s: %q", cmd, got)
		}
	}
	c.Write([]byte("Subject: stalled\r\n\r\nhalf a mess"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := c.reply(); !strings.HasPrefix(got, "421 4.4.2") {
		t.Errorf("stalled DATA: %q, want 421 4.4.2", got)
	}
	// The server has closed: the next read ends.
	c.send("age\r\nMAIL FROM:<smuggled@example.org>")
	if got := c.reply(); !strings.HasPrefix(got, "read error") {
		t.Errorf("after the timeout the server still answered: %q", got)
	}
	if n := len(e.dest.deliveries()); n != 0 {
		t.Errorf("%d messages delivered, want 0", n)
	}
}
