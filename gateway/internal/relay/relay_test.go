package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// oneMX is DNS for example.test with one MX host at ips.
func oneMX(t testing.TB, ips ...string) Resolver {
	zone := "example.test. IN MX 10 mx.example.test.\n"
	for _, ip := range ips {
		rr := "A"
		if strings.Contains(ip, ":") {
			rr = "AAAA"
		}
		zone += fmt.Sprintf("mx.example.test. IN %s %s\n", rr, ip)
	}
	return dnsFor(t, zone)
}

// twoMX and threeMX list their hosts out of preference order, so tests
// also check that the best one is tried first.
const twoMX = `
example.test.     IN MX 20 mx2.example.test.
example.test.     IN MX 10 mx1.example.test.
mx1.example.test. IN A 127.0.0.2
mx2.example.test. IN A 127.0.0.3
`

const threeMX = `
example.test.     IN MX 30 mx3.example.test.
example.test.     IN MX 10 mx1.example.test.
example.test.     IN MX 20 mx2.example.test.
mx1.example.test. IN A 127.0.0.2
mx2.example.test. IN A 127.0.0.3
mx3.example.test. IN A 127.0.0.4
`

func sameReply(t *testing.T, got error, want *smtp.SMTPError) {
	t.Helper()
	reply := asReply(t, got)
	if !reflect.DeepEqual(reply, want) {
		t.Fatalf("reply = %d %v %q, want %d %v %q",
			reply.Code, reply.EnhancedCode, reply.Message, want.Code, want.EnhancedCode, want.Message)
	}
}

func TestDeliversWithEnvelopeAndReturnsDestinationReply(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.dataReply = func(delivery) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as 4XyZ"}
	}
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))

	from := "SRS0=HHH=TT=origin.test=alice@fwd.test"
	txn, ok := send(t, r, "example.test", from, "owner@real.test", testMessage)

	want := &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as 4XyZ"}
	if !reflect.DeepEqual(ok, want) {
		t.Errorf("Data reply = %+v, want %+v", ok, want)
	}
	got := d.deliveries()
	if len(got) != 1 {
		t.Fatalf("destination got %d messages, want 1", len(got))
	}
	if got[0].from != from || !slices.Equal(got[0].to, []string{"owner@real.test"}) {
		t.Errorf("envelope = %q -> %q", got[0].from, got[0].to)
	}
	if got[0].data != testMessage {
		t.Errorf("data = %q, want %q", got[0].data, testMessage)
	}
	if got[0].helo != "sluice.test" {
		t.Errorf("EHLO name = %q", got[0].helo)
	}
	if want := fmt.Sprintf("mx.example.test[127.0.0.2]:%d", port); txn.Remote() != want {
		t.Errorf("Remote() = %q, want %q", txn.Remote(), want)
	}
}

func TestDestinationRepliesComeBackVerbatim(t *testing.T) {
	userUnknown := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "<nobody@real.test>: Recipient address rejected: User unknown"}
	greylisted := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Greylisted, try again in 5 minutes"}
	multiLine := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relaying denied.\nSee the policy page."}
	spam := &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Message rejected as spam"}

	for _, tc := range []struct {
		name     string
		rcpt     string
		atData   bool
		want     *smtp.SMTPError
		prepared func(d *destination)
	}{
		{"550 at RCPT", "nobody@real.test", false, userUnknown, nil},
		{"451 at RCPT", "later@real.test", false, greylisted, nil},
		{"multi-line at RCPT", "relay@real.test", false, multiLine, nil},
		{"554 at DATA", "spam@real.test", true, spam, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			d := newDestination()
			d.rcptReply = map[string]*smtp.SMTPError{
				"nobody@real.test": userUnknown, "later@real.test": greylisted, "relay@real.test": multiLine,
			}
			d.dataReply = func(got delivery) *smtp.SMTPError {
				if slices.Contains(got.to, "spam@real.test") {
					return spam
				}
				return nil
			}
			d.serve(t, lns...)
			r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
			ctx := context.Background()

			txn, rcptErr, err := r.Begin(ctx, "example.test", "bounce@fwd.test", nil, tc.rcpt)
			if err != nil {
				t.Fatal(err)
			}
			err = rcptErr
			if tc.atData {
				if err != nil {
					t.Fatalf("Rcpt: %v", err)
				}
				var ok *smtp.SMTPError
				ok, err = txn.Data(ctx, []byte(testMessage))
				if ok != nil {
					t.Fatalf("Data succeeded with %+v", ok)
				}
			}
			sameReply(t, err, tc.want)
			txn.Close()

			// A refused recipient leaves the connection in a known state:
			// the next transaction reuses it and carries only its own
			// recipient. A refused message may have been answered before
			// the destination read all of it: that connection is closed.
			send(t, r, "example.test", "second@fwd.test", "owner@real.test", testMessage)
			want := 1
			if tc.atData {
				want = 2
			}
			if n := d.acceptedConns(); n != want {
				t.Errorf("destination accepted %d connections, want %d", n, want)
			}
			got := d.deliveries()
			last := got[len(got)-1]
			if last.from != "second@fwd.test" || !slices.Equal(last.to, []string{"owner@real.test"}) {
				t.Errorf("second transaction envelope = %q -> %q", last.from, last.to)
			}
		})
	}
}

func TestMultiLineReplyWithCodeOnEveryLine(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	(&rawMX{ehlo: "250-mx.example.test\r\n250 8BITMIME\r\n", replies: map[string]string{
		"RCPT": "550-5.1.1 The email account that you tried to reach does not exist.\r\n" +
			"550-5.1.1 Please try\x1b[31m double-checking.\r\n" +
			"550 5.1.1 https://support.example/x - gsmtp\r\n",
	}}).serve(t, lns[0])
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	ctx := context.Background()
	txn, rcptErr, err := r.Begin(ctx, "example.test", "bounce@fwd.test", nil, "gone@real.test")
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	sameReply(t, rcptErr, &smtp.SMTPError{
		Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "The email account that you tried to reach does not exist.\n" +
			"Please try[31m double-checking.\nhttps://support.example/x - gsmtp",
	})
}

func TestFollowsMXPreferenceAndSkipsRefusingHost(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	lns[0].Close() // the best MX refuses connections
	second, third := newDestination(), newDestination()
	second.serve(t, lns[1])
	third.serve(t, lns[2])
	res := dnsFor(t, threeMX)
	r := newTestRelay(t, port, res)
	txn, _ := send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)

	if len(second.deliveries()) != 1 || len(third.deliveries()) != 0 {
		t.Errorf("deliveries: mx2 %d, mx3 %d; want 1, 0", len(second.deliveries()), len(third.deliveries()))
	}
	if !strings.HasPrefix(txn.Remote(), "mx2.example.test[127.0.0.3]") {
		t.Errorf("Remote() = %q, want mx2", txn.Remote())
	}
}

func TestRefusedGreetingOrEHLOTriesNextHost(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	(&rawMX{greeting: "421 4.3.2 mx1 is busy\r\n"}).serve(t, lns[0])
	refusing, good := newDestination(), newDestination()
	refusing.refuseEHLO = true
	refusing.serve(t, lns[1])
	good.serve(t, lns[2])
	r := newTestRelay(t, port, dnsFor(t, threeMX))
	send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	if refusing.acceptedConns() != 1 || len(good.deliveries()) != 1 {
		t.Errorf("mx2 saw %d connections, mx3 got %d messages; want 1, 1",
			refusing.acceptedConns(), len(good.deliveries()))
	}
}

func TestRejectedSenderIsFinalButTemporaryOneTriesNextHost(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reply     *smtp.SMTPError
		wantFinal bool
	}{
		{"5xx", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender rejected"}, true},
		{"4xx", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try later"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2", "127.0.0.3")
			first, backup := newDestination(), newDestination()
			first.mailReply = tc.reply
			first.serve(t, lns[0])
			backup.serve(t, lns[1])
			r := newTestRelay(t, port, dnsFor(t, twoMX))
			txn, _, err := r.Begin(context.Background(), "example.test", "a@fwd.test", nil, "owner@real.test")
			if tc.wantFinal {
				sameReply(t, err, tc.reply)
				if backup.acceptedConns() != 0 {
					t.Errorf("backup MX was contacted after a 5xx to MAIL FROM")
				}
				return
			}
			if err != nil {
				t.Fatalf("Begin: %v", err)
			}
			defer txn.Close()
			if !strings.HasPrefix(txn.Remote(), "mx2.example.test") {
				t.Errorf("Remote() = %q, want the backup MX", txn.Remote())
			}
		})
	}
}

func TestPrefersIPv6(t *testing.T) {
	requireIPv6(t)
	port, lns := listenSamePort(t, "::1", "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2", "::1"))
	txn, _ := send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	if got := d.deliveries()[0].local; got != fmt.Sprintf("[::1]:%d", port) {
		t.Errorf("delivered via %s, want ::1", got)
	}
	if want := fmt.Sprintf("mx.example.test[::1]:%d", port); txn.Remote() != want {
		t.Errorf("Remote() = %q, want %q", txn.Remote(), want)
	}
}

func TestFallsBackToIPv4(t *testing.T) {
	requireIPv6(t)
	port, lns := listenSamePort(t, "::1", "127.0.0.2")
	lns[0].Close() // nothing listens on ::1
	d := newDestination()
	d.serve(t, lns[1])
	r := newTestRelay(t, port, oneMX(t, "::1", "127.0.0.2"))
	send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	if got := d.deliveries()[0].local; got != fmt.Sprintf("127.0.0.2:%d", port) {
		t.Errorf("delivered via %s, want 127.0.0.2", got)
	}
}

func TestDisableIPv6UsesOnlyIPv4(t *testing.T) {
	requireIPv6(t)
	port, lns := listenSamePort(t, "::1", "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "::1", "127.0.0.2"), func(c *Config) { c.DisableIPv6 = true })
	send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	if got := d.deliveries()[0].local; got != fmt.Sprintf("127.0.0.2:%d", port) {
		t.Errorf("delivered via %s, want 127.0.0.2", got)
	}
}

func TestDomainWithoutMXIsItsOwnHost(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, dnsFor(t, "example.test. IN A 127.0.0.2\n"))
	txn, _ := send(t, r, "example.test", "a@fwd.test", "owner@example.test", testMessage)
	if len(d.deliveries()) != 1 || !strings.HasPrefix(txn.Remote(), "example.test[127.0.0.2]") {
		t.Errorf("deliveries %d, Remote() %q", len(d.deliveries()), txn.Remote())
	}
}

func TestDNSOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name string
		zone string
		fail string
		code int
		enh  smtp.EnhancedCode
		text string
	}{
		{"null MX", "example.test. IN MX 0 .\n", "",
			556, smtp.EnhancedCode{5, 1, 10}, "example.test: domain does not accept mail (null MX)"},
		{"NXDOMAIN", "other.test. IN A 127.0.0.2\n", "",
			550, smtp.EnhancedCode{5, 1, 2}, "example.test: domain does not exist"},
		{"MX lookup fails", "example.test. IN MX 10 mx.example.test.\n", "example.test.",
			451, smtp.EnhancedCode{4, 4, 3}, "example.test: MX lookup failed"},
		{"MX host does not exist", "example.test. IN MX 10 gone.example.test.\n", "",
			550, smtp.EnhancedCode{5, 4, 4}, "gone.example.test: no such host (AAAA); gone.example.test: no such host (A)"},
		{"no MX and no address", "example.test. IN TXT \"v=spf1 -all\"\n", "",
			550, smtp.EnhancedCode{5, 4, 4}, "example.test: no addresses"},
		{"MX host lookup fails", "example.test. IN MX 10 mx.example.test.\nmx.example.test. IN A 127.0.0.2\n", "mx.example.test.",
			451, smtp.EnhancedCode{4, 4, 3}, "mx.example.test: AAAA lookup failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fail []string
			if tc.fail != "" {
				fail = append(fail, tc.fail)
			}
			r := newTestRelay(t, 2525, dnsFor(t, tc.zone, fail...))
			_, _, err := r.Begin(context.Background(), "example.test", "a@fwd.test", nil, "owner@real.test")
			reply := asReply(t, err)
			if reply.Code != tc.code || reply.EnhancedCode != tc.enh || !strings.Contains(reply.Message, tc.text) {
				t.Errorf("reply = %d %v %q, want %d %v containing %q",
					reply.Code, reply.EnhancedCode, reply.Message, tc.code, tc.enh, tc.text)
			}
		})
	}
}

func TestAllUnreachableIsTemporaryAndSaysWhatWasTried(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2", "127.0.0.3")
	for _, ln := range lns {
		ln.Close()
	}
	r := newTestRelay(t, port, dnsFor(t, twoMX))
	_, _, err := r.Begin(context.Background(), "example.test", "a@fwd.test", nil, "owner@real.test")
	want := fmt.Sprintf("example.test: no destination reachable: "+
		"mx1.example.test[127.0.0.2]:%d: connection refused; mx2.example.test[127.0.0.3]:%d: connection refused", port, port)
	sameReply(t, err, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: want})
}

func TestStartTLSWhenOffered(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.server.TLSConfig = selfSignedTLS(t, "mx.example.test")
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	txn, _ := send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	if !txn.TLS() || !d.deliveries()[0].tls {
		t.Errorf("TLS() = %v, destination saw TLS = %v; want both true", txn.TLS(), d.deliveries()[0].tls)
	}
	if d.deliveries()[0].helo != "sluice.test" {
		t.Errorf("EHLO name after STARTTLS = %q", d.deliveries()[0].helo)
	}
}

func TestTLSConfigVerifiesAgainstMXName(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.server.TLSConfig = selfSignedTLS(t, "mx.example.test")
	d.serve(t, lns...)
	cert, err := x509.ParseCertificate(d.server.TLSConfig.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"), func(c *Config) { c.Security, c.RootCAs = Verify, roots })
	txn, _ := send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	if !txn.TLS() || d.acceptedConns() != 1 {
		t.Errorf("TLS() = %v after %d connections; want a verified TLS session on the first", txn.TLS(), d.acceptedConns())
	}
}

func TestTLSHandshakeFailureRetriesWithoutTLS(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.server.TLSConfig = &tls.Config{} // offers STARTTLS, has no certificate
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	txn, _ := send(t, r, "example.test", "a@fwd.test", "owner@real.test", testMessage)
	if txn.TLS() || d.deliveries()[0].tls || d.acceptedConns() != 2 {
		t.Errorf("TLS() = %v, connections = %d; want plaintext on a second connection", txn.TLS(), d.acceptedConns())
	}
}

func TestReusesConnection(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	send(t, r, "example.test", "a@fwd.test", "one@real.test", testMessage)
	send(t, r, "example.test", "b@fwd.test", "two@real.test", testMessage)
	got := d.deliveries()
	if d.acceptedConns() != 1 || len(got) != 2 {
		t.Fatalf("%d connections for %d messages; want 1 for 2", d.acceptedConns(), len(got))
	}
	if got[1].from != "b@fwd.test" || !slices.Equal(got[1].to, []string{"two@real.test"}) {
		t.Errorf("second envelope = %q -> %q", got[1].from, got[1].to)
	}
}

func TestReplacesDeadIdleConnection(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	send(t, r, "example.test", "a@fwd.test", "one@real.test", testMessage)
	if r.pool.idleCount() != 1 {
		t.Fatalf("%d idle connections, want 1", r.pool.idleCount())
	}
	d.dropConnections()
	send(t, r, "example.test", "b@fwd.test", "two@real.test", testMessage)
	if d.acceptedConns() != 2 || len(d.deliveries()) != 2 {
		t.Errorf("%d connections, %d messages; want 2, 2", d.acceptedConns(), len(d.deliveries()))
	}
}

func TestIdleLimitPerHost(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"), func(c *Config) { c.MaxIdle = 1 })
	ctx := context.Background()
	var txns []*Txn
	for range 3 {
		txn, _, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, "owner@real.test")
		if err != nil {
			t.Fatal(err)
		}
		txns = append(txns, txn)
	}
	for _, txn := range txns {
		txn.Close()
	}
	if d.acceptedConns() != 3 {
		t.Errorf("%d connections, want 3", d.acceptedConns())
	}
	waitFor(t, "the idle connections beyond MaxIdle to close", func() bool { return r.pool.idleCount() == 1 })
}

// Under load the pool keeps every connection a transaction finishes
// with, so that the sessions still coming reuse them rather than
// connecting afresh; those beyond MaxIdle close after a second idle.
func TestSurplusIdleConnectionsAreReusedThenClosed(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"), func(c *Config) { c.MaxIdle = 1 })
	ctx := context.Background()
	begin := func() *Txn {
		t.Helper()
		txn, _, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, "owner@real.test")
		if err != nil {
			t.Fatal(err)
		}
		return txn
	}
	txns := []*Txn{begin(), begin(), begin(), begin()}
	for _, txn := range txns[:3] {
		txn.Close()
	}
	txns[0], txns[1], txns[2] = begin(), begin(), begin()
	if d.acceptedConns() != 4 {
		t.Errorf("%d connections for 7 transactions, 4 at a time; want 4", d.acceptedConns())
	}
	for _, txn := range txns {
		txn.Close()
	}
	if r.pool.idleCount() != 4 {
		t.Errorf("%d idle just after 4 transactions ended, want 4", r.pool.idleCount())
	}
	waitFor(t, "the surplus to close", func() bool { return r.pool.idleCount() == 1 })
}

func TestIdleConnectionExpires(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"), func(c *Config) { c.IdleTimeout = 10 * time.Millisecond })
	send(t, r, "example.test", "a@fwd.test", "one@real.test", testMessage)
	waitFor(t, "the idle connection to expire", func() bool { return r.pool.idleCount() == 0 })
	send(t, r, "example.test", "b@fwd.test", "two@real.test", testMessage)
	if d.acceptedConns() != 2 {
		t.Errorf("%d connections, want 2", d.acceptedConns())
	}
}

func TestCloseClosesIdleConnections(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	send(t, r, "example.test", "a@fwd.test", "one@real.test", testMessage)
	if r.pool.idleCount() != 1 {
		t.Fatalf("%d idle before Close, want 1", r.pool.idleCount())
	}
	r.Close()
	send(t, r, "example.test", "b@fwd.test", "two@real.test", testMessage)
	if r.pool.idleCount() != 0 || d.acceptedConns() != 2 {
		t.Errorf("after Close: %d idle, %d connections; want 0, 2", r.pool.idleCount(), d.acceptedConns())
	}
}

func TestDropMidDataIsTemporaryAndNotPooled(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.dropInData.Store(true)
	d.serve(t, lns...)
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	ctx := context.Background()
	txn, rcptErr, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, "owner@real.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := rcptErr; err != nil {
		t.Fatal(err)
	}
	ok, err := txn.Data(ctx, []byte(testMessage))
	if ok != nil {
		t.Fatalf("Data reported success %+v for a dropped connection", ok)
	}
	reply := asReply(t, err)
	if reply.Code != 451 || reply.EnhancedCode != (smtp.EnhancedCode{4, 4, 2}) {
		t.Errorf("reply = %d %v %q, want 451 4.4.2", reply.Code, reply.EnhancedCode, reply.Message)
	}
	txn.Close()
	if r.pool.idleCount() != 0 {
		t.Errorf("the dropped connection was pooled")
	}
	d.dropInData.Store(false)
	send(t, r, "example.test", "b@fwd.test", "owner@real.test", testMessage)
	if d.acceptedConns() != 2 {
		t.Errorf("%d connections, want 2", d.acceptedConns())
	}
}

func TestCanceledContextAbortsData(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := newDestination()
	d.stallInData, d.unstall = make(chan struct{}), make(chan struct{})
	d.serve(t, lns...)
	t.Cleanup(func() { close(d.unstall) })
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	txn, rcptErr, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, "owner@real.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := rcptErr; err != nil {
		t.Fatal(err)
	}
	go func() {
		<-d.stallInData
		cancel()
	}()
	ok, err := txn.Data(ctx, []byte(testMessage))
	if ok != nil {
		t.Fatalf("Data reported success %+v", ok)
	}
	if reply := asReply(t, err); reply.Code != 451 || reply.EnhancedCode != (smtp.EnhancedCode{4, 4, 2}) {
		t.Errorf("reply = %d %v %q, want 451 4.4.2", reply.Code, reply.EnhancedCode, reply.Message)
	}
	txn.Close()
	if r.pool.idleCount() != 0 {
		t.Errorf("an aborted connection was pooled")
	}
}

func TestSMTPUTF8(t *testing.T) {
	for _, supported := range []bool{false, true} {
		t.Run(fmt.Sprintf("supported=%v", supported), func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			d := newDestination()
			d.server.EnableSMTPUTF8 = supported
			d.serve(t, lns...)
			r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
			ctx := context.Background()
			txn, rcptErr, err := r.Begin(ctx, "example.test", "jörg@fwd.test", &smtp.MailOptions{UTF8: true}, "owner@real.test")
			if !supported {
				reply := asReply(t, err)
				if reply.Code != 553 || reply.EnhancedCode != (smtp.EnhancedCode{5, 6, 7}) ||
					!strings.Contains(reply.Message, "SMTPUTF8") {
					t.Errorf("reply = %d %v %q, want 553 5.6.7", reply.Code, reply.EnhancedCode, reply.Message)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := rcptErr; err != nil {
				t.Fatal(err)
			}
			if _, err := txn.Data(ctx, []byte(testMessage)); err != nil {
				t.Fatal(err)
			}
			txn.Close()
			if got := d.deliveries(); len(got) != 1 || !got[0].utf8 || got[0].from != "jörg@fwd.test" {
				t.Errorf("deliveries = %+v, want one with SMTPUTF8", got)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	res := dnsFor(t, "")
	for name, tc := range map[string]struct {
		c Config
		r Resolver
	}{
		"no resolver":            {Config{Helo: "a.test"}, nil},
		"no Helo":                {Config{}, res},
		"Helo with space":        {Config{Helo: "a test"}, res},
		"port":                   {Config{Helo: "a.test", Port: 70000}, res},
		"source unset":           {Config{Helo: "a.test", Sources: []Source{{Helo: "b.test"}}}, res},
		"source IPv4-mapped":     {Config{Helo: "a.test", Sources: []Source{{Addr: netip.MustParseAddr("::ffff:127.0.0.1")}}}, res},
		"source unspecified":     {Config{Helo: "a.test", Sources: []Source{{Addr: netip.MustParseAddr("::")}}}, res},
		"source Helo with space": {Config{Helo: "a.test", Sources: []Source{{Addr: netip.MustParseAddr("127.0.0.2"), Helo: "b test"}}}, res},
	} {
		if _, err := New(tc.c, tc.r); err == nil {
			t.Errorf("%s: New accepted %+v", name, tc.c)
		}
	}
}

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		code int
		text string
		want smtp.SMTPError
	}{
		{250, "2.0.0 Ok: queued as X", smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as X"}},
		{250, "Ok", smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "Ok"}},
		{550, "5.1.1 a\n5.1.1 b", smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "a\nb"}},
		{550, "a\n5.7.1 b", smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "a\nb"}},
		{550, "4.1.1 wrong class", smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "4.1.1 wrong class"}},
		{451, "4.3.0 bell\a\r and\x00 nul", smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "bell and nul"}},
	} {
		if got := parseReply(tc.code, tc.text); !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("parseReply(%d, %q) = %+v, want %+v", tc.code, tc.text, *got, tc.want)
		}
	}
}

// waitFor polls cond until it holds, failing the test after a long while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
