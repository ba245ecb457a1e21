// Package rspamdtest starts a real rspamd for tests: Debian's package
// rspamd, in the foreground, with a minimal configuration in a temporary
// directory. Its normal worker listens on loopback; no Redis, no
// controller, no modules (nothing that needs the network), the GTUBE test
// patterns on, and one rule of our own so that tests can choose a score.
package rspamdtest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// GTUBE is rspamd's test pattern: a message whose body carries it is
// answered with the action reject (and the symbol GTUBE).
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// ScoreHeader is the header field of the test rule: a message with
// "X-Sluice-Test: 6.5" gets the symbol TestSymbol scoring 6.5.
const (
	ScoreHeader = "X-Sluice-Test"
	TestSymbol  = "SLUICE_TEST"
)

// EnvelopeSymbol is found on every message, scoring 0.01, with the
// option "ip=... helo=... hostname=... from=... rcpt=a,b queue-id=...":
// what the client said about the envelope.
const EnvelopeSymbol = "SLUICE_ENVELOPE"

// The action thresholds of the configuration, as rspamd's defaults but
// with soft reject at 12 and rewrite subject at 8, so that every action
// can be reached with ScoreHeader. A rewritten Subject is SubjectPrefix
// and the old one.
const (
	Greylist       = 4.0
	AddHeader      = 6.0
	RewriteSubject = 8.0
	SoftReject     = 12.0
	Reject         = 15.0
	SubjectPrefix  = "***SPAM*** "
)

const config = `options {
  pidfile = "{{dir}}/rspamd.pid";
  dbdir = "{{dir}}";
  tempdir = "{{dir}}";
  filters = "";
  gtube_patterns = "all";
  dns { nameserver = ["127.0.0.1:1"]; timeout = 0.1s; retransmits = 0; }
}
lua = "{{dir}}/rules.lua";
logging { type = "file"; filename = "{{dir}}/rspamd.log"; level = "info"; }
worker "normal" {
  bind_socket = "{{addr}}";
  count = 1;
}
actions {
  reject = 15; "soft_reject" = 12; "rewrite_subject" = 8; "add_header" = 6; greylist = 4;
  subject = "***SPAM*** %s";
}
`

// rules are the test rules: the value of the header is the score of
// SLUICE_TEST; SLUICE_ENVELOPE (score 0.01) says what the client told
// rspamd about the envelope, in its option.
const rules = `rspamd_config:register_symbol({
  name = 'SLUICE_ENVELOPE',
  score = 0.01,
  callback = function(task)
    local from = task:get_from('smtp')
    local rcpts = task:get_recipients('smtp') or {}
    local r = {}
    for _, a in ipairs(rcpts) do table.insert(r, a.addr) end
    return true, 1.0, string.format('ip=%s helo=%s hostname=%s from=%s rcpt=%s queue-id=%s',
      tostring(task:get_from_ip()), tostring(task:get_helo()), tostring(task:get_hostname()),
      from and from[1] and from[1].addr or '', table.concat(r, ','), tostring(task:get_queue_id()))
  end,
})
rspamd_config:register_symbol({
  name = 'SLUICE_TEST',
  score = 1.0,
  callback = function(task)
    local h = task:get_header('X-Sluice-Test')
    if h then return true, tonumber(h) or 1.0 end
    return false
  end,
})
`

// Server is a running rspamd.
type Server struct {
	Addr string // of its normal worker: 127.0.0.1:port
	dir  string
}

// Log returns what rspamd logged so far: a line per message scanned, with
// its symbols and their options.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "rspamd.log"))
	return string(b)
}

// Start starts rspamd and waits until it answers; it is stopped when the
// test ends. Without the rspamd binary the test is skipped.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		t.Skip("rspamd is not installed (Debian: apt-get install rspamd); .ci/run installs it")
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	conf := strings.NewReplacer("{{dir}}", dir, "{{addr}}", addr).Replace(config)
	if err := os.WriteFile(filepath.Join(dir, "rspamd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.lua"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	// -f: stay in the foreground; -i: run the workers as the user we
	// are, root included, rather than refuse to.
	out, err := os.Create(filepath.Join(dir, "rspamd.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "-f", "-i", "-u", u.Username, "-g", g.Name, "-c", filepath.Join(dir, "rspamd.conf"))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its workers with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	// Loading the configuration compiles the public suffix list: seconds.
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("rspamd exited: %s", logs(dir))
		default:
		}
		if ping(addr) {
			return &Server{Addr: addr, dir: dir}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("rspamd did not answer /ping on %s within 90s: %s", addr, logs(dir))
	return nil
}

func ping(addr string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/ping")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b := make([]byte, 16)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode == 200 && strings.HasPrefix(string(b[:n]), "pong")
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func logs(dir string) string {
	var b strings.Builder
	for _, f := range []string{"rspamd.out", "rspamd.log"} {
		data, _ := os.ReadFile(filepath.Join(dir, f))
		fmt.Fprintf(&b, "\n%s:\n%s", f, data)
	}
	return b.String()
}
