package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// scriptedMX is a destination on loopback that answers from a script: the
// fuzzer's bytes split at 0xff, the first part the greeting and each next
// one the reply to the next command (or to the end of data), sent as
// given with CRLF after it. It records what each connection delivered.
// When the script runs out, or the client stays silent for a moment
// (waiting on a reply that never ends), it hangs up.
type scriptedMX struct {
	ln net.Listener

	mu      sync.Mutex
	script  [][]byte
	conns   sync.WaitGroup
	records []mxRecord
}

// mxRecord is what one connection saw: the message, if the client ended
// its data, and the reply that the end of data got.
type mxRecord struct {
	data     []byte
	eodReply []byte
}

func startScriptedMX(f *testing.F) *scriptedMX {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	mx := &scriptedMX{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mx.mu.Lock()
			script := mx.script
			mx.conns.Add(1)
			mx.mu.Unlock()
			go mx.serve(c, script)
		}
	}()
	f.Cleanup(func() { ln.Close() })
	return mx
}

func (mx *scriptedMX) serve(c net.Conn, script [][]byte) {
	defer mx.conns.Done()
	defer c.Close()
	var rec mxRecord
	defer func() {
		mx.mu.Lock()
		mx.records = append(mx.records, rec)
		mx.mu.Unlock()
	}()
	r := bufio.NewReader(c)
	send := func(reply []byte) bool {
		_, err := c.Write(append(append([]byte(nil), reply...), "\r\n"...))
		return err == nil
	}
	if !send(script[0]) {
		return
	}
	inData := false
	for _, reply := range script[1:] {
		if inData {
			var data []byte
			for {
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				line, err := r.ReadBytes('\n')
				if err != nil {
					return
				}
				if string(line) == ".\r\n" {
					break
				}
				data = append(data, bytes.TrimPrefix(line, []byte("."))...) // undo dot-stuffing
			}
			rec.data, rec.eodReply = data, reply
			inData = false
		} else {
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			inData = bytes.EqualFold(bytes.TrimSpace(line), []byte("DATA")) && bytes.HasPrefix(reply, []byte("354"))
		}
		if !send(reply) {
			return
		}
	}
}

// run sets the script, runs f and returns what the connections saw.
func (mx *scriptedMX) run(script [][]byte, f func()) []mxRecord {
	mx.mu.Lock()
	mx.script, mx.records = script, nil
	mx.mu.Unlock()
	f()
	mx.conns.Wait()
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return mx.records
}

// fuzzMessage has a line that needs dot-stuffing and one that is a lone
// dot, which must arrive as they are, not end the message.
const fuzzMessage = "From: a@example.org\r\nSubject: x\r\n\r\n.leading dot\r\n.\r\nend\r\n"

// FuzzDestinationReplies has a destination answer the relay with
// arbitrary bytes: greetings, EHLO replies, replies to MAIL, RCPT and
// DATA, multi-line or not, with any codes, texts and control characters.
// Whatever it says, the relay returns; what it passes back to our client
// is a 4xx or 5xx SMTP reply whose text cannot inject reply lines; and it
// reports a message accepted only when the destination received all of
// it, unchanged, and answered its end with 2xx. Seeds:
// testdata/fuzz/FuzzDestinationReplies, each reply separated by 0xff.
func FuzzDestinationReplies(f *testing.F) {
	mx := startScriptedMX(f)
	port := mx.ln.Addr().(*net.TCPAddr).Port
	res, err := resolver.New(resolver.Config{
		Nameservers: []string{"127.0.0.1:1"}, // never asked: the static records answer
		Static:      []string{"dest.test. 300 IN MX 10 mx.dest.test.", "mx.dest.test. 300 IN A 127.0.0.1"},
	})
	if err != nil {
		f.Fatal(err)
	}
	r, err := New(Config{Helo: "mx.ours.test", Port: port, DisableIPv6: true, MaxIdle: -1,
		ConnectTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}, res)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })

	f.Fuzz(func(t *testing.T, script []byte) {
		parts := bytes.Split(script, []byte{0xff})
		var accepted *smtp.SMTPError
		records := mx.run(parts, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				accepted = transaction(ctx, t, r)
			}()
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatalf("the relay did not return in a minute, answered by %q", script)
			}
		})
		if accepted == nil || slices.ContainsFunc(parts, func(p []byte) bool { return !wellFormed(p) }) {
			// A destination that sends more than one reply at a time, or
			// lines that are no reply, can make the client read a reply as
			// the answer to another command; it only has to be survived.
			return
		}
		for _, rec := range records {
			if rec.eodReply != nil && string(rec.data) == fuzzMessage && finalCode(rec.eodReply)/100 == 2 {
				return
			}
		}
		t.Fatalf("Data reported %+v, but no destination connection received the message and answered 2xx: %q", accepted, records)
	})
}

// transaction runs MAIL, RCPT and DATA as the inbound session does,
// checking each failure, and returns the reply to DATA if it succeeded.
func transaction(ctx context.Context, t *testing.T, r *Relay) *smtp.SMTPError {
	txn, rcptErr, err := r.Begin(ctx, "dest.test", "SRS0=abcd=JP=example.org=alice@ours.test", &smtp.MailOptions{}, "me@dest.test")
	if err != nil {
		checkFailure(t, "MAIL", err)
		return nil
	}
	defer txn.Close()
	if err := rcptErr; err != nil {
		checkFailure(t, "RCPT", err)
		return nil
	}
	reply, err := txn.Data(ctx, []byte(fuzzMessage))
	if err != nil {
		checkFailure(t, "DATA", err)
		return nil
	}
	if reply == nil || reply.Code/100 != 2 || !cleanText(reply.Message) {
		t.Fatalf("DATA succeeded with the reply %+v", reply)
	}
	return reply
}

func checkFailure(t *testing.T, stage string, err error) {
	t.Helper()
	var reply *smtp.SMTPError
	if !errors.As(err, &reply) || reply.Code < 400 || reply.Code > 599 || !cleanText(reply.Message) {
		t.Fatalf("%s failed with %#v, not a clean 4xx or 5xx reply", stage, err)
	}
	if e := reply.EnhancedCode; e != smtp.EnhancedCodeNotSet && e != smtp.NoEnhancedCode && e[0] != reply.Code/100 {
		t.Fatalf("%s failed with %d %v: enhanced code of another class", stage, reply.Code, e)
	}
}

// cleanText is text go-smtp's server can send without the client reading
// more than one reply: no control characters but the line separator,
// which it turns into a continuation line of the same reply.
func cleanText(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' && r != '\n' || r == 0x7f })
}

// wellFormed reports whether a script part is one reply: lines of the same
// three-digit code, each but the last followed by '-', the last by a space
// or nothing.
func wellFormed(reply []byte) bool {
	lines := strings.Split(string(reply), "\r\n")
	for i, line := range lines {
		if len(line) < 3 || line[:3] != lines[0][:3] || strings.ContainsAny(line, "\r\n") || finalCode([]byte(line)) == 0 {
			return false
		}
		last := i == len(lines)-1
		if len(line) > 3 && (last && line[3] != ' ' || !last && line[3] != '-') || !last && len(line) == 3 {
			return false
		}
	}
	return true
}

// finalCode is the code of a reply's last line, as a client reads it.
func finalCode(reply []byte) int {
	lines := strings.Split(strings.TrimRight(string(reply), "\r\n"), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if len(last) < 3 {
		return 0
	}
	code := 0
	for _, c := range last[:3] {
		if c < '0' || c > '9' {
			return 0
		}
		code = code*10 + int(c-'0')
	}
	return code
}
