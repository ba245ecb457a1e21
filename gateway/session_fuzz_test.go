package gateway_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// replyLine is one line of an SMTP reply: a code, then a space, a hyphen
// or nothing, then text without LF. (go-smtp echoes an unknown command
// in its 500 reply, bare CR and all: the client's own bytes, to itself.
// Texts from plugins and destinations are checked for any control
// character by FuzzVerdict and FuzzDestinationReplies.)
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9]([ -][^\n]*)?$`)

// FuzzSession feeds whole SMTP sessions of raw client bytes to a real
// Sluice (router and dmarc plugins, SRS, DKIM, ARC, the relay) over
// loopback TCP, closing the client's side after them. go-smtp parses the
// commands; this fuzzes what Sluice adds around them. Whatever the
// client sends, Sluice must:
//   - answer: a 220 greeting, then only well-formed reply lines, and
//     close the session once the client is done;
//   - never panic (go-smtp would recover, answer "421 4.0.0 Internal
//     server error" and log "panic serving");
//   - never relay to a foreign domain: the destination only ever gets
//     mail for the addresses the router forwards to.
//
// Seeds (testdata/fuzz/FuzzSession) are sessions that deliver, refuse,
// pipeline, smuggle with bare CR and LF, use BDAT, STARTTLS and relay
// tricks.
func FuzzSession(f *testing.F) {
	e := startEnv(f, envOptions{})
	// Where the router sends mail; bad@ and later@ are refused by the
	// destination, me@down.test is never reached.
	routed := map[string]bool{"me@dest.test": true, "friend@example.org": true}
	f.Fuzz(func(t *testing.T, session []byte) {
		// The gateway logs every session; keep only this one's.
		e.logs.Reset()
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Write while reading, so that a long session cannot block on a
		// full buffer; then say we are done and read to the end.
		go func() {
			c.Write(session)
			c.(*net.TCPConn).CloseWrite()
		}()
		c.SetReadDeadline(time.Now().Add(time.Minute))
		out, err := io.ReadAll(c)
		reset := errors.Is(err, syscall.ECONNRESET)
		if err != nil && !reset {
			t.Fatalf("session %q: no end after a minute (%v); got %q", session, err, out)
		}

		if !bytes.HasPrefix(out, []byte("220 ")) {
			t.Fatalf("session %q: no greeting: %q", session, out)
		}
		if reset {
			// Sluice hung up with our bytes unread, which makes the
			// kernel reset the connection; what we had not read yet may
			// be lost, so only whole lines count.
			out = out[:bytes.LastIndex(out, []byte("\r\n"))+2]
		} else if !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("session %q: the last reply is cut: %q", session, out)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n") {
			if !replyLine.MatchString(line) {
				t.Fatalf("session %q: %q is no reply line, in:\n%s", session, line, out)
			}
		}
		if bytes.Contains(out, []byte("Internal server error")) || strings.Contains(e.logs.String(), "panic serving") {
			t.Fatalf("session %q: panic:\n%s", session, e.logs.String())
		}
		for _, d := range e.dest.deliveries() {
			for _, to := range d.to {
				if !routed[to] {
					t.Fatalf("session %q: the destination got mail for %q", session, to)
				}
			}
		}
	})
}
