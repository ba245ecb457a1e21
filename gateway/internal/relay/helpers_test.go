package relay

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// dnsFor serves zone (zone-file lines, absolute names) from a real DNS
// server on loopback and returns the real resolver pointed at it. Queries
// for the names in fail get SERVFAIL.
func dnsFor(t testing.TB, zone string, fail ...string) Resolver {
	t.Helper()
	srv := dnstest.Start(t, "$TTL 300\n"+zone)
	for _, name := range fail {
		srv.Fail(name, dns.RcodeServerFailure)
	}
	r, err := resolver.New(resolver.Config{Nameservers: []string{srv.Addr()}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// listenSamePort listens on one port on each of ips, so that several
// "hosts" differ only by address, as MX hosts do.
func listenSamePort(t testing.TB, ips ...string) (int, []net.Listener) {
	t.Helper()
	for range 50 {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatalf("listen on %s: %v", ips[0], err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{first}
		for _, ip := range ips[1:] {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) == len(ips) {
			return port, lns
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	t.Fatalf("no port free on all of %v", ips)
	return 0, nil
}

func requireIPv6(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
}

// delivery is what a destination saw of one transaction.
type delivery struct {
	from   string
	utf8   bool
	to     []string
	data   string
	tls    bool
	helo   string
	local  string // the destination's address the client connected to
	remote string // the client's address
}

// destination is a real go-smtp server acting as a destination MX. Its
// behaviour fields are set before the first connection.
type destination struct {
	server *smtp.Server

	rcptReply   map[string]*smtp.SMTPError // per recipient; nil = accept
	mailReply   *smtp.SMTPError
	dataReply   func(delivery) *smtp.SMTPError // reply to the data; nil = go-smtp's 250
	refuseEHLO  bool                           // fail NewSession, so EHLO gets 451
	dropInData  atomic.Bool                    // close the connection while reading data
	stallInData chan struct{}                  // if set, Data signals on it and waits for unstall
	unstall     chan struct{}

	mu       sync.Mutex
	accepted int
	conns    []net.Conn
	got      []delivery
}

func newDestination() *destination {
	d := &destination{rcptReply: map[string]*smtp.SMTPError{}}
	d.server = smtp.NewServer(smtp.BackendFunc(d.newSession))
	d.server.Domain = "dest.test"
	d.server.ReadTimeout = time.Minute
	d.server.WriteTimeout = time.Minute
	d.server.ErrorLog = log.New(io.Discard, "", 0)
	return d
}

// serve starts the destination on lns.
func (d *destination) serve(t testing.TB, lns ...net.Listener) {
	for _, ln := range lns {
		go d.server.Serve(countingListener{ln, d})
	}
	t.Cleanup(func() { d.server.Close() })
}

func (d *destination) acceptedConns() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.accepted
}

func (d *destination) deliveries() []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]delivery(nil), d.got...)
}

// dropConnections closes the destination's side of every connection, as
// a server does with connections idle too long.
func (d *destination) dropConnections() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
}

type countingListener struct {
	net.Listener
	d *destination
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.d.mu.Lock()
		l.d.accepted++
		l.d.conns = append(l.d.conns, c)
		l.d.mu.Unlock()
	}
	return c, err
}

func (d *destination) newSession(c *smtp.Conn) (smtp.Session, error) {
	if d.refuseEHLO {
		return nil, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "not now"}
	}
	_, isTLS := c.TLSConnectionState()
	return &destSession{d: d, c: c, cur: delivery{
		tls:    isTLS,
		helo:   c.Hostname(),
		local:  c.Conn().LocalAddr().String(),
		remote: c.Conn().RemoteAddr().String(),
	}}, nil
}

type destSession struct {
	d   *destination
	c   *smtp.Conn
	cur delivery
}

func (s *destSession) Reset() {
	s.cur = delivery{tls: s.cur.tls, helo: s.cur.helo, local: s.cur.local, remote: s.cur.remote}
}

func (s *destSession) Logout() error { return nil }

func (s *destSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.d.mailReply != nil {
		return s.d.mailReply
	}
	s.cur.from = from
	s.cur.utf8 = opts != nil && opts.UTF8
	return nil
}

func (s *destSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if r := s.d.rcptReply[to]; r != nil {
		return r
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *destSession) Data(r io.Reader) error {
	if s.d.dropInData.Load() {
		io.ReadFull(r, make([]byte, 10))
		s.c.Conn().Close()
		return io.ErrUnexpectedEOF
	}
	if s.d.stallInData != nil {
		s.d.stallInData <- struct{}{}
		<-s.d.unstall
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(b)
	s.d.mu.Lock()
	s.d.got = append(s.d.got, s.cur)
	s.d.mu.Unlock()
	if s.d.dataReply != nil {
		if reply := s.d.dataReply(s.cur); reply != nil {
			return reply
		}
	}
	return nil
}

// selfSignedTLS is a server config with a throwaway certificate.
func selfSignedTLS(t testing.TB, name string) *tls.Config {
	t.Helper()
	cert, err := certs.SelfSigned(name)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// rawMX is a destination on loopback that speaks just enough SMTP, by
// hand, to show how the relay's bytes arrive: it records every Read, so
// commands that arrive in one Read left the relay in one write. It
// answers each command line as soon as it has it, pipelined or not.
// Its fields for the first message make it answer out of turn, as broken
// or hurried servers do; later messages get "250 2.0.0 queued as X".
type rawMX struct {
	greeting string            // default "220 mx.dest.test ESMTP"
	ehlo     string            // reply to EHLO, if not in replies
	replies  map[string]string // reply per command verb; default 354 to DATA, else 250; after a 421 it hangs up

	// For the first message only:
	dataReply  string        // written once it has the message, instead of the 250
	afterReply string        // written after that, on its own, once idle is closed if set
	idle       chan struct{} // closed by the test once the relay has put the connection away
	hangUp     bool          // close the connection after that
	replied    chan struct{} // if set, closed when all that is done
	beforeNext string        // written just before the reply to the next command, as a late reply

	mu       sync.Mutex
	messages int
	reads    []string // every Read of every connection, in order
	lines    []string // every command line (and "<message>" for each message)
}

// serve serves d on ln. Set its fields before.
func (d *rawMX) serve(t testing.TB, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go d.conn(c)
		}
	}()
}

func (d *rawMX) conn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	greeting := d.greeting
	if greeting == "" {
		greeting = "220 mx.dest.test ESMTP\r\n"
	}
	c.Write([]byte(greeting))
	buf := make([]byte, 256<<10)
	var pending []byte
	inData := false
	late := "" // written before the next reply
	for {
		n, err := c.Read(buf)
		d.mu.Lock()
		if n > 0 {
			d.reads = append(d.reads, string(buf[:n]))
		}
		d.mu.Unlock()
		pending = append(pending, buf[:n]...)
		for {
			if inData {
				end := bytes.Index(pending, []byte("\r\n.\r\n"))
				if end < 0 {
					break
				}
				pending, inData = pending[end+5:], false
				d.record("<message>")
				var open bool
				if late, open = d.answerMessage(c); !open {
					return
				}
				continue
			}
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			line := strings.TrimRight(string(pending[:i]), "\r")
			pending = pending[i+1:]
			d.record(line)
			verb, _, _ := strings.Cut(line, " ")
			verb = strings.ToUpper(verb)
			reply, ok := d.replies[verb]
			switch {
			case verb == "EHLO" && d.ehlo != "":
				reply = d.ehlo
			case verb == "QUIT":
				c.Write([]byte("221 bye\r\n"))
				return
			case !ok && verb == "DATA":
				reply = "354 go ahead\r\n"
			case !ok:
				reply = "250 2.0.0 ok\r\n"
			}
			c.Write([]byte(late + reply))
			late = ""
			if strings.HasPrefix(reply, "421") {
				return
			}
			inData = verb == "DATA" && strings.HasPrefix(reply, "354")
		}
		if err != nil {
			return
		}
	}
}

// answerMessage answers the end of a message. It returns what to write
// before the next reply, and whether the connection stays open.
func (d *rawMX) answerMessage(c net.Conn) (late string, open bool) {
	const queued = "250 2.0.0 queued as X\r\n"
	d.mu.Lock()
	d.messages++
	first := d.messages == 1
	d.mu.Unlock()
	if !first {
		c.Write([]byte(queued))
		return "", true
	}
	c.Write([]byte(cmp.Or(d.dataReply, queued)))
	if d.afterReply != "" {
		if d.idle != nil {
			<-d.idle
		}
		c.Write([]byte(d.afterReply))
	}
	if d.hangUp {
		c.Close()
	}
	if d.replied != nil {
		close(d.replied)
	}
	return d.beforeNext, !d.hangUp
}

func (d *rawMX) record(line string) {
	d.mu.Lock()
	d.lines = append(d.lines, line)
	d.mu.Unlock()
}

// readWith returns the Read that brought the command starting with
// prefix, failing the test if none did.
func (d *rawMX) readWith(t *testing.T, prefix string) string {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.reads {
		if strings.HasPrefix(r, prefix) || strings.Contains(r, "\r\n"+prefix) {
			return r
		}
	}
	t.Fatalf("no read brought %q; reads: %q", prefix, d.reads)
	return ""
}

func (d *rawMX) commands() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.lines)
}

// newTestRelay returns a Relay for tests, closed at cleanup.
func newTestRelay(t testing.TB, port int, res Resolver, adjust ...func(*Config)) *Relay {
	t.Helper()
	c := Config{Helo: "sluice.test", Port: port, ConnectTimeout: 10 * time.Second, CommandTimeout: time.Minute}
	for _, f := range adjust {
		f(&c)
	}
	r, err := New(c, res)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// send runs one whole transaction and fails the test on any error.
func send(t testing.TB, r *Relay, domain, from, to, msg string) (*Txn, *smtp.SMTPError) {
	t.Helper()
	ctx := context.Background()
	txn, rcptErr, err := r.Begin(ctx, domain, from, nil, to)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := rcptErr; err != nil {
		t.Fatalf("Rcpt: %v", err)
	}
	ok, err := txn.Data(ctx, []byte(msg))
	if err != nil {
		t.Fatalf("Data: %v", err)
	}
	txn.Close()
	return txn, ok
}

const testMessage = "From: a@origin.test\r\nTo: info@example.test\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n"

// asReply asserts err is an *smtp.SMTPError and returns it.
func asReply(t testing.TB, err error) *smtp.SMTPError {
	t.Helper()
	reply, ok := err.(*smtp.SMTPError)
	if !ok {
		t.Fatalf("error %T %v is not an *smtp.SMTPError", err, err)
	}
	return reply
}
