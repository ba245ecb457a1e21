package smtpd

import (
	"context"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
)

// sinkBackend accepts every message and reads it to its end.
type sinkBackend struct{}

func (sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession{}, nil }

type sinkSession struct{}

func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (sinkSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
func (sinkSession) Reset()                               {}
func (sinkSession) Logout() error                        { return nil }

// loopbackMX sends every domain to 127.0.0.1.
type loopbackMX struct{}

func (loopbackMX) LookupMX(context.Context, string) ([]*net.MX, error) {
	return []*net.MX{{Host: "mx.dest.test.", Pref: 10}}, nil
}

func (loopbackMX) LookupNetIP(_ context.Context, network, _ string) ([]netip.Addr, error) {
	if network == "ip6" {
		return nil, nil
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

func listenLoopback(b testing.TB) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// benchServer starts a Sluice SMTP server for example.test on loopback,
// routing everything to owner@dest.test through the router plugin and
// relaying to destPort on 127.0.0.1, and returns its listener.
func benchServer(b testing.TB, destPort int) net.Listener {
	l := listenLoopback(b)
	serveOn(b, destPort, l)
	return l
}

// serveOn starts benchServer's server on l.
func serveOn(b testing.TB, destPort int, l net.Listener) {
	r, err := relay.New(relay.Config{Helo: "mx.example.test", Port: destPort}, loopbackMX{})
	if err != nil {
		b.Fatal(err)
	}
	rw, err := srs.New(srs.Config{Domain: "example.test", Secrets: []string{"bench"}})
	if err != nil {
		b.Fatal(err)
	}
	gens, err := NewGenerations(Parts{Chain: routerChain(b, newTestHost(b), "owner@dest.test"), Relay: r, SRS: rw}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gens.Close() })
	srv, err := New(Config{
		Hostname: "mx.example.test", Domains: []string{"example.test"}, MaxMessageSize: 25 << 20,
		MaxRecipients: 100, MaxConnections: 100, MaxConnectionsPerIP: 100, CommandTimeout: time.Minute,
		DataTimeout: time.Minute, MaxLineLength: 4096, MaxHops: 50,
	}, gens)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
}

// BenchmarkForward is one message through a whole SMTP session, as a
// sending server makes it: connect, EHLO, MAIL, RCPT, DATA of a 4 KiB
// message, QUIT, relayed in session by the router plugin to a go-smtp sink
// on loopback (without authentication checks or signing, as bench/load.sh's
// forward profile). The client and the sink run in this process too, so
// the figures are the whole exchange's; the per-message costs of Sluice
// alone are what bench/load.sh measures.
func BenchmarkForward(b *testing.B) {
	sinkL := listenLoopback(b)
	sink := smtp.NewServer(sinkBackend{})
	sink.Domain = "mx.dest.test"
	go sink.Serve(sinkL)
	b.Cleanup(func() { sink.Close() })

	l := benchServer(b, sinkL.Addr().(*net.TCPAddr).Port)

	msg := "From: <alice@example.org>\r\nTo: <info@example.test>\r\nSubject: benchmark\r\n\r\n" +
		strings.Repeat("The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n", 55)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := smtp.Dial(l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if err := c.SendMail("alice@example.org", []string{"info@example.test"}, strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
		c.Quit()
	}
}

// BenchmarkCommands is the SMTP layer's cost per command: go-smtp's
// parser, our handlers and the reply, over loopback. One connection sends
// MAIL FROM (with SIZE), RSET and NOOP pipelined, 100 of each per batch, and
// reads the 300 replies; ns/op is per command. MAIL FROM is checked (the
// address parsed, SRS-rewritten) but starts no SPF check: there is no
// [auth] here.
func BenchmarkCommands(b *testing.B) {
	l := benchServer(b, 0)

	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	text := textproto.NewConn(conn)
	if _, _, err := text.ReadResponse(220); err != nil {
		b.Fatal(err)
	}
	if err := text.PrintfLine("EHLO client.example.org"); err != nil {
		b.Fatal(err)
	}
	if _, _, err := text.ReadResponse(250); err != nil {
		b.Fatal(err)
	}
	const perBatch = 100
	batch := []byte(strings.Repeat("MAIL FROM:<alice@example.org> SIZE=4096\r\nRSET\r\nNOOP\r\n", perBatch))
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += 3 * perBatch {
		if _, err := conn.Write(batch); err != nil {
			b.Fatal(err)
		}
		for range 3 * perBatch {
			if _, _, err := text.ReadResponse(250); err != nil {
				b.Fatal(err)
			}
		}
	}
}
