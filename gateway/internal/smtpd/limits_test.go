package smtpd

import (
	"io"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The sampler lets one event through per interval, and the next one
// through says how many it held back.
func TestSampler(t *testing.T) {
	s := &sampler{every: 10 * time.Second}
	t0 := time.Unix(1_000_000, 0)
	steps := []struct {
		at       time.Duration
		ok       bool
		held     int
		scenario string
	}{
		{0, true, 0, "the first event"},
		{time.Second, false, 0, "one second later"},
		{9 * time.Second, false, 0, "still within the interval"},
		{10 * time.Second, true, 2, "at the interval's end: the two held back"},
		{11 * time.Second, false, 0, "within the next interval"},
		{time.Hour, true, 1, "long after"},
		{time.Hour + 10*time.Second, true, 0, "the next interval, nothing held"},
	}
	for _, st := range steps {
		if ok, held := s.allow(t0.Add(st.at)); ok != st.ok || held != st.held {
			t.Errorf("%s: allow = %v, %d; want %v, %d", st.scenario, ok, held, st.ok, st.held)
		}
	}
}

// writeCounter is a listener whose connections record each write, to see
// how replies leave: the bytes still go over the real connection.
type writeCounter struct {
	net.Listener
	mu     sync.Mutex
	writes []string
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, l: l}, nil
}

func (l *writeCounter) written() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.writes)
}

type countedConn struct {
	net.Conn
	l *writeCounter
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	c.l.writes = append(c.l.writes, string(p))
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}

// A multi-line reply, EHLO's, leaves in one write rather than one per
// line as go-smtp writes it, and arrives whole; one-line replies leave
// as they are written.
func TestMultiLineReplyOneWrite(t *testing.T) {
	l := &writeCounter{Listener: listenLoopback(t)}
	serveOn(t, 0, l)
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	text := textproto.NewConn(conn)
	if _, _, err := text.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	text.PrintfLine("EHLO client.example.org")
	_, ehlo, err := text.ReadResponse(250)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(ehlo, "\n")
	if len(lines) < 5 || !slices.Contains(lines, "PIPELINING") {
		t.Fatalf("EHLO reply %q, want several lines with PIPELINING", ehlo)
	}
	text.PrintfLine("NOOP")
	if _, _, err := text.ReadResponse(250); err != nil {
		t.Fatal(err)
	}
	w := l.written()
	if len(w) != 3 {
		t.Fatalf("replies to the greeting, EHLO and NOOP went in %d writes, want 3: %q", len(w), w)
	}
	if got := strings.Count(w[1], "\r\n"); got != len(lines) || !strings.HasPrefix(w[1], "250-") {
		t.Errorf("second write %q, want EHLO's %d lines", w[1], len(lines))
	}
}

// Only a line that continues a reply is held: not its last line, nor
// several lines, nor what goes out inside TLS (a record begins with its
// type, a byte below 0x20).
func TestContinuesReply(t *testing.T) {
	for p, want := range map[string]bool{
		"250-PIPELINING\r\n":            true,
		"250-\r\n":                      true,
		"250 SMTPUTF8\r\n":              false,
		"250-A\r\n250 B\r\n":            false,
		"250-no line end":               false,
		"250-bare LF\n":                 false,
		"\x17\x03\x03\x00\x1f250-x\r\n": false,
		"25-x\r\n":                      false,
	} {
		if got := continuesReply([]byte(p)); got != want {
			t.Errorf("continuesReply(%q) = %v, want %v", p, got, want)
		}
	}
}

// refusingBackend is a destination that refuses every recipient with its
// reply.
type refusingBackend struct{ reply *smtp.SMTPError }

func (b refusingBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return refusingSession(b), nil
}

type refusingSession struct{ reply *smtp.SMTPError }

func (refusingSession) Mail(string, *smtp.MailOptions) error   { return nil }
func (s refusingSession) Rcpt(string, *smtp.RcptOptions) error { return s.reply }
func (refusingSession) Data(r io.Reader) error                 { _, err := io.Copy(io.Discard, r); return err }
func (refusingSession) Reset()                                 {}
func (refusingSession) Logout() error                          { return nil }

// A destination's multi-line reply, passed on as the sender's, whose last
// line reads like go-smtp's farewell after too many errors, is passed on
// whole: its held lines go out with it, not in front of the next reply,
// and no 421 takes its place on a session that goes on.
func TestRelayedReplyLikeFarewellPassedWhole(t *testing.T) {
	destL := listenLoopback(t)
	dest := smtp.NewServer(refusingBackend{&smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "Mailbox busy\nToo many errors. Quiting now"}})
	dest.Domain = "mx.dest.test"
	go dest.Serve(destL)
	t.Cleanup(func() { dest.Close() })
	l := listenLoopback(t)
	serveOn(t, destL.Addr().(*net.TCPAddr).Port, l)

	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // a reply read wrong waits for more
	text := textproto.NewConn(conn)
	if _, _, err := text.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"EHLO client.example.org", "MAIL FROM:<alice@example.org>"} {
		text.PrintfLine("%s", cmd)
		if _, _, err := text.ReadResponse(250); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	text.PrintfLine("RCPT TO:<info@example.test>")
	code, msg, err := text.ReadResponse(500)
	if want := "Mailbox busy\n5.5.1 Too many errors. Quiting now"; err != nil || msg != want {
		t.Errorf("RCPT: %d %q, %v; want the destination's 500 %q", code, msg, err, want)
	}
	text.PrintfLine("NOOP")
	if code, msg, err := text.ReadResponse(250); err != nil || strings.Contains(msg, "\n") {
		t.Errorf("NOOP after it: %d %q, %v; want one line of 250", code, msg, err)
	}
}
