package gateway_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway"
	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// destination is a real SMTP server playing the destination MX. It
// records what it accepts and answers some recipients and messages with
// failures, as real mailbox providers do.
type destination struct {
	addr string
	// certPEM is its certificate (for mx.dest.test, self-signed), for a
	// tls_ca_file that trusts it.
	certPEM []byte

	mu       sync.Mutex
	received []delivery
	conns    int
	wire     *bytes.Buffer // what clients sent, when recorded
	faults   func() fault  // chooses each transaction's fault; nil: none
}

// fault is what the destination does wrong in one transaction, for tests
// of what Sluice promises when a destination misbehaves.
type fault int

const (
	noFault      fault = iota
	rcptTempfail       // 451 to each RCPT
	rcptReject         // 550 to each RCPT
	dataTempfail       // 451 at the end of data; nothing stored
	dataReject         // 554 at the end of data; nothing stored
	dropMidData        // the connection closes halfway through the message; nothing stored
	dropReply          // the message is stored, then the connection closes before the reply
)

// setFaults makes the destination call choose at each MAIL FROM.
func (d *destination) setFaults(choose func() fault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = choose
}

func (d *destination) nextFault() fault {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.faults == nil {
		return noFault
	}
	return d.faults()
}

type delivery struct {
	from    string
	to      []string
	utf8    bool
	tls     bool
	data    []byte
	replied bool // false: stored, but the connection was closed before the 250 (dropReply)
}

// Recipients and message markers the destination refuses.
var destReplies = map[string]*smtp.SMTPError{
	"bad@dest.test":   {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "The email account that you tried to reach does not exist"},
	"later@dest.test": {Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox temporarily unavailable, try again later"},
}

const dataRejectMarker = "X-Test: reject-at-data"

// startDestination starts the destination. With wire, it offers no
// STARTTLS and records every byte its clients send, for tests of what
// goes over the wire.
func startDestination(t testing.TB, wire bool) *destination {
	t.Helper()
	return startDestinationOn(t, "127.0.0.1:0", wire)
}

// startDestinationOn starts a destination listening on addr: a second
// destination MX, on another loopback address and the relay's port.
func startDestinationOn(t testing.TB, addr string, wire bool) *destination {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	d := &destination{addr: l.Addr().String()}
	if wire {
		d.wire = &bytes.Buffer{}
	}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &destSession{d: d, conn: c}, nil
	}))
	s.Domain = "mx.dest.test"
	s.EnableSMTPUTF8 = true
	cert, err := certs.SelfSigned("mx.dest.test")
	if err != nil {
		t.Fatal(err)
	}
	if !wire {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	d.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	s.ErrorLog = nopLogger{}
	go s.Serve(countingListener{l, d})
	t.Cleanup(func() { s.Close() })
	return d
}

func (d *destination) port() string { _, p, _ := net.SplitHostPort(d.addr); return p }

// countingListener counts TCP connections, which is what reuse saves.
type countingListener struct {
	net.Listener
	d *destination
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.d.mu.Lock()
		l.d.conns++
		if l.d.wire != nil {
			c = recordingConn{c, l.d}
		}
		l.d.mu.Unlock()
	}
	return c, err
}

// wireBytes returns what clients sent, with wire recording on.
func (d *destination) wireBytes() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.wire.Bytes())
}

type recordingConn struct {
	net.Conn
	d *destination
}

func (c recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.d.mu.Lock()
	c.d.wire.Write(p[:n])
	c.d.mu.Unlock()
	return n, err
}

func (d *destination) connections() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns
}

func (d *destination) deliveries() []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]delivery(nil), d.received...)
}

type destSession struct {
	d     *destination
	conn  *smtp.Conn
	cur   delivery
	fault fault
}

func (s *destSession) Reset()        { s.cur = delivery{} }
func (s *destSession) Logout() error { return nil }
func (s *destSession) Mail(from string, o *smtp.MailOptions) error {
	_, tls := s.conn.TLSConnectionState()
	s.cur = delivery{from: from, utf8: o.UTF8, tls: tls}
	s.fault = s.d.nextFault()
	return nil
}
func (s *destSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e, ok := destReplies[to]; ok {
		return e
	}
	switch s.fault {
	case rcptTempfail:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Fault: try again later"}
	case rcptReject:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Fault: no such mailbox"}
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *destSession) Data(r io.Reader) error {
	if s.fault == dropMidData {
		io.CopyN(io.Discard, r, 100)
		s.conn.Conn().Close()
		return errors.New("fault: connection dropped in the middle of the message")
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	switch {
	case bytes.Contains(b, []byte(dataRejectMarker)):
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message refused by destination policy"}
	case s.fault == dataTempfail:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Fault: try again later"}
	case s.fault == dataReject:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Fault: message refused"}
	}
	s.cur.data = b
	s.cur.replied = s.fault != dropReply
	s.d.mu.Lock()
	s.d.received = append(s.d.received, s.cur)
	n := len(s.d.received)
	s.d.mu.Unlock()
	if s.fault == dropReply {
		s.conn.Conn().Close()
		return errors.New("fault: connection dropped before the reply")
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: fmt.Sprintf("OK: queued as DEST%d", n)}
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// env is one Sluice under test with its DNS server and destination.
type env struct {
	dns   *dnstest.Server
	dest  *destination
	dest2 *destination // dest2.test's MX (127.0.0.2, dest's port), with envOptions.dest2
	gw    *gateway.Gateway
	addr  string // Sluice's first SMTP listener
	// The submission service's listeners, with envOptions.submission:
	// STARTTLS (as port 587) and implicit TLS (as port 465).
	subAddr, subTLSAddr string
	addrs               []string
	keys                map[string]string // selector -> TXT record
	listKey             crypto.Signer     // lists.example.net's ARC key, selector "arc"
	secret              string
	logs                *syncbuf.Buffer
	cfgText             string
	cfgPath             string
	zone                string // what e.dns serves; publishKey adds to it
}

const testSRSSecret = "test-secret-0123456789abcdef"

// The router's rules for every test; each address exercises one path.
const routerRules = `
[plugin.config]
subaddress_separator = "+"
[[plugin.config.rule]]
match = "info@ours.test"
action = "forward"
to = "me@dest.test"
[[plugin.config.rule]]
match = "bad@ours.test"
action = "forward"
to = "bad@dest.test"
[[plugin.config.rule]]
match = "later@ours.test"
action = "forward"
to = "later@dest.test"
[[plugin.config.rule]]
match = "down@ours.test"
action = "forward"
to = "me@down.test"
[[plugin.config.rule]]
match = "elsewhere@ours.test"
action = "forward"
to = "friend@example.org"
[[plugin.config.rule]]
match = "same@ours.test"
action = "forward"
to = ["me@dest.test", "you@dest.test"]
[[plugin.config.rule]]
match = "team@ours.test"
action = "forward"
to = ["me@dest.test", "you@dest2.test"]
[[plugin.config.rule]]
match = "team-bad@ours.test"
action = "forward"
to = ["bad@dest.test", "you@dest2.test"]
[[plugin.config.rule]]
match = "pair-bad@ours.test"
action = "forward"
to = ["me@dest.test", "bad@dest.test"]
[[plugin.config.rule]]
match = "gone@ours.test"
action = "reject"
code = 550
enhanced = "5.1.1"
text = "Gone: this address was retired"
[[plugin.config.rule]]
match = "drop@ours.test"
action = "drop"
# A plugin that tries to make Sluice relay for a foreign domain.
[[plugin.config.rule]]
match = "*@other.test"
action = "forward"
to = "me@dest.test"
`

// routerPlugin is the [[plugin]] entry of the router with routerRules;
// rules that follow it are the router's too.
func routerPlugin(t testing.TB) string {
	return fmt.Sprintf(`
[[plugin]]
name = "router"
path = %q
stages = ["rcpt"]
%s`, wasmbuild.ForTest(t, "./plugins/router"), routerRules)
}

type envOptions struct {
	listen string // TOML list of listen addresses; default one on 127.0.0.1
	tls    string // TLS lines for [smtp]; default a self-signed certificate
	smtp   string // extra lines for [smtp]
	relay  string // extra lines for [relay]
	dns    string // lines for [dns] besides nameservers; default timeout = "1s"
	admin  string // extra lines for [admin], whose listener is on a free loopback port; default no watching
	// plugins replaces the [[plugin]] tables; default the router and dmarc
	// plugins.
	plugins string
	// domains is the TOML list of the gateway's domains; default
	// ["ours.test"].
	domains string
	// wire makes the destination record what it reads, in plain text.
	wire bool
	// dest2 starts a second destination, the MX of dest2.test.
	dest2 bool
	// unsigned leaves out the DKIM keys: nothing is signed or sealed.
	unsigned bool
	// dkim holds extra lines for [dkim], after its settings and before
	// its keys: settings, and [[dkim.key]] tables of more keys.
	dkim string
	// auth holds extra lines for [auth], such as enabled = false.
	auth string
	// top holds top-level settings, such as data_dir; sections whole
	// tables, such as [tls] or [https].
	top, sections string
	// submission, if set, turns the submission service on, listening
	// on free loopback ports with STARTTLS and with implicit TLS: these
	// are the other lines of [submission], such as its users.
	submission string
	// level, if set, is the gateway's log level, which reloads set from
	// [log] level; default debug, fixed.
	level *slog.LevelVar
}

// startEnv starts a gateway in this process, with its DNS server and
// destination.
func startEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := prepareEnv(t, o)
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	var level slog.Leveler = slog.LevelDebug
	if o.level != nil {
		level = o.level
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: level}))
	g, err := gateway.New(context.Background(), cfg, log, o.level)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	if err := g.Listen(); err != nil {
		t.Fatal(err)
	}
	e.gw, e.addrs, e.addr = g, g.Addrs(), g.Addrs()[0]
	if o.submission != "" {
		starttls, implicit := g.SubmissionAddrs()
		e.subAddr, e.subTLSAddr = starttls[0], implicit[0]
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", e.logs.String())
		}
	})
	return e
}

// prepareEnv starts the DNS server and the destination and writes
// gateway.toml (e.cfgPath) for a gateway to serve, in this process or as
// the real binary.
func prepareEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{dest: startDestination(t, o.wire), keys: map[string]string{}, secret: testSRSSecret, logs: &syncbuf.Buffer{}}
	if o.dest2 {
		// The relay has one port for every destination: another address.
		e.dest2 = startDestinationOn(t, "127.0.0.2:"+e.dest.port(), o.wire)
	}
	if o.listen == "" {
		o.listen = `["127.0.0.1:0"]`
	}
	if o.tls == "" {
		o.tls = "tls_self_signed = true"
	}
	if o.domains == "" {
		o.domains = `["ours.test"]`
	}
	if o.admin == "" {
		// Other test processes rebuild the shared plugin files, which
		// would set the watcher off.
		o.admin = `watch_interval = "1h"`
	}
	dir := t.TempDir()
	keys := testKeys(t)
	for sel, key := range map[string]crypto.Signer{"rsa": keys.rsa, "ed": keys.ed} {
		pem, _ := dkim.MarshalKey(key)
		if err := os.WriteFile(filepath.Join(dir, sel+".pem"), pem, 0o600); err != nil {
			t.Fatal(err)
		}
		e.keys[sel], _ = dkim.TXTRecord(key)
	}
	listTXT, _ := dkim.TXTRecord(keys.list)
	zone := `
dest.test.        300 IN MX 10 mx.dest.test.
mx.dest.test.     300 IN A 127.0.0.1
example.org.      300 IN MX 10 mx.dest.test.
dest2.test.       300 IN MX 10 mx.dest2.test.
mx.dest2.test.    300 IN A 127.0.0.2
down.test.        300 IN MX 10 mx.down.test.
mx.down.test.     300 IN A 127.0.0.9
; a sender whose policy is reject and whose SPF does not allow us
strict.example.          300 IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.strict.example.   300 IN TXT "v=DMARC1; p=reject"
quarantine.example.        300 IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.quarantine.example. 300 IN TXT "v=DMARC1; p=quarantine"
; a mailing list that sends from loopback and seals with ARC
lists.example.net.       300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
; a sender whose DMARC record never answers
slow.example.            300 IN A 192.0.2.7
`
	zone += fmt.Sprintf("arc._domainkey.lists.example.net. 300 IN TXT %s\n", splitTXT(listTXT))
	// Another list, not trusted, with the same key.
	zone += fmt.Sprintf("arc._domainkey.other-list.example. 300 IN TXT %s\n", splitTXT(listTXT))
	for sel, txt := range e.keys {
		zone += fmt.Sprintf("%s._domainkey.ours.test. 300 IN TXT %s\n", sel, splitTXT(txt))
	}
	e.dns, e.zone = dnstest.Start(t, zone), zone
	e.dns.Drop("_dmarc.slow.example.")
	e.listKey = keys.list

	dnsLines := o.dns
	if dnsLines == "" {
		dnsLines = `timeout = "1s"`
	}
	dkimKeys := fmt.Sprintf("[dkim]\n%s\n[[dkim.key]]\nselector = \"rsa\"\nfile = %q\n[[dkim.key]]\nselector = \"ed\"\nfile = %q",
		o.dkim, filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "ed.pem"))
	if o.unsigned {
		dkimKeys = ""
	}
	if o.submission != "" {
		o.sections += "\n[submission]\nlisten = [\"127.0.0.1:0\"]\nlisten_tls = [\"127.0.0.1:0\"]\n" + o.submission + "\n"
	}
	if !strings.Contains(o.top, "data_dir") {
		// The queue and other state live here, never in the default
		// /var/lib/sluice, which tests share.
		o.top = fmt.Sprintf("data_dir = %q\n", filepath.Join(dir, "data")) + o.top
	}
	e.cfgText = fmt.Sprintf(`
hostname = "mx.ours.test"
domains = %s
%s
[smtp]
listen = %s
%s
%s
[relay]
port = %s
connect_timeout = "2s"
%s
[srs]
secrets = [%q]
%s
[dns]
nameservers = [%q]
%s
[auth]
timeout = "5s"
%s
%s
[wasm]
cache_dir = %q
[admin]
listen = "127.0.0.1:0"
%s
%s
`, o.domains, o.top, o.listen, o.tls, o.smtp, e.dest.port(), o.relay, e.secret, dkimKeys,
		e.dns.Addr(), dnsLines, o.auth, o.sections, wasmbuild.CacheDirForTest(), o.admin, o.plugins)
	if o.plugins == "" {
		e.cfgText += fmt.Sprintf(`
%s
[[plugin]]
name = "dmarc"
path = %q
[plugin.config]
trusted_arc_sealers = ["lists.example.net"]
`, routerPlugin(t), wasmbuild.ForTest(t, "./plugins/dmarc"))
	}
	e.cfgPath = filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(e.cfgPath, []byte(e.cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// addRecords adds records (zone file lines) to the zone e's DNS server
// serves.
func (e *env) addRecords(t testing.TB, records string) {
	t.Helper()
	e.zone += records
	if err := e.dns.SetRecords(e.zone); err != nil {
		t.Fatal(err)
	}
}

// publishKey publishes a DKIM key of ours under selector sel, and makes it
// one of the keys checkForwarded expects to have signed.
func (e *env) publishKey(t testing.TB, sel, txt string) {
	t.Helper()
	e.addRecords(t, fmt.Sprintf("%s._domainkey.ours.test. 300 IN TXT %s\n", sel, splitTXT(txt)))
	e.keys[sel] = txt
}

// keySet is made once per test process: RSA key generation is slow.
type keySet struct{ rsa, ed, list crypto.Signer }

var (
	keysOnce   sync.Once
	sharedKeys keySet
	keysErr    error
)

func testKeys(t testing.TB) keySet {
	keysOnce.Do(func() {
		gen := func(alg string) crypto.Signer {
			k, err := dkim.GenerateKey(alg, 2048)
			if err != nil {
				keysErr = err
			}
			return k
		}
		sharedKeys = keySet{rsa: gen("rsa"), ed: gen("ed25519"), list: gen("rsa")}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return sharedKeys
}

// splitTXT writes a TXT record as zone-file strings of at most 255 bytes.
func splitTXT(s string) string {
	var parts []string
	for len(s) > 0 {
		n := min(len(s), 255)
		parts = append(parts, `"`+s[:n]+`"`)
		s = s[n:]
	}
	return strings.Join(parts, " ")
}

// client opens an SMTP session to Sluice, as a sending server would.
func (e *env) client(t *testing.T) *smtp.Client {
	t.Helper()
	return dialClient(t, e.addr)
}

func dialClient(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("sender.example.org"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendMail sends one message over c: from, to one recipient, msg.
func sendMail(t *testing.T, c *smtp.Client, from, to, msg string) error {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	_, err := sendData(t, c, msg)
	return err
}

// tlsClient opens an SMTP session to addr over STARTTLS.
func tlsClient(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendNumbered sends n messages over c, each with an X-Test-Id field,
// NAME-m0, NAME-m1...: for a test to find each message at the
// destination. It returns the ids of those accepted, and why the next was
// not.
func sendNumbered(c *smtp.Client, name string, n int) ([]string, error) {
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-m%d", name, i)
		if err := c.Mail("alice@example.org", nil); err != nil {
			return ids, fmt.Errorf("%s: MAIL: %w", id, err)
		}
		if err := c.Rcpt("info@ours.test", nil); err != nil {
			return ids, fmt.Errorf("%s: RCPT: %w", id, err)
		}
		w, err := c.Data()
		if err != nil {
			return ids, fmt.Errorf("%s: DATA: %w", id, err)
		}
		io.WriteString(w, "X-Test-Id: "+id+"\r\n"+testMessage)
		if err := w.Close(); err != nil {
			return ids, fmt.Errorf("%s: end of data: %w", id, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// sendData sends a message body and returns the reply: code and text.
func sendData(t *testing.T, c *smtp.Client, msg string) (*smtp.DataResponse, error) {
	t.Helper()
	w, err := c.Data()
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatal(err)
	}
	return w.CloseWithResponse()
}

// wantReply checks that err is an SMTP reply with the code, enhanced code
// and a text containing want.
func wantReply(t *testing.T, what string, err error, code int, enh smtp.EnhancedCode, text string) {
	t.Helper()
	var e *smtp.SMTPError
	if !errors.As(err, &e) {
		t.Errorf("%s: got %v, want %d %v %q", what, err, code, enh, text)
		return
	}
	if e.Code != code || e.EnhancedCode != enh || !strings.Contains(e.Message, text) {
		t.Errorf("%s: got %d %v %q, want %d %v containing %q", what, e.Code, e.EnhancedCode, e.Message, code, enh, text)
	}
}

const testMessage = "From: Alice <alice@example.org>\r\n" +
	"To: info@ours.test\r\n" +
	"Subject: a test\r\n" +
	"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hello.\r\n" +
	".leading dot survives\r\n"
