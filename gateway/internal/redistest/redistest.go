// Package redistest starts a real Redis for tests: Debian's package
// redis-server, on a loopback port in a temporary directory, without
// persistence. A test can stop it, start it again on the same port, and
// pause it (SIGSTOP: a Redis that is hung, taking connections but never
// answering), which is how the gateway's shared key-value store is
// tested against outages.
package redistest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/freeport"
)

// Option changes how a Server is started.
type Option func(*Server)

// Password makes the server require the password (requirepass: the
// default user's password).
func Password(p string) Option {
	return func(s *Server) { s.args = append(s.args, "--requirepass", p) }
}

// User adds an ACL user with the password and every permission, and
// turns the default user off, so that only user can log in.
func User(name, password string) Option {
	return func(s *Server) {
		s.args = append(s.args,
			"--user", name, "on", ">"+password, "~*", "&*", "+@all",
			"--user", "default", "off")
	}
}

// TLS makes the server speak only TLS on its port, with a certificate for
// 127.0.0.1 from a fresh CA (CAPEM, CAPool); clients need no certificate.
func TLS() Option {
	return func(s *Server) { s.tls = true }
}

// Args adds redis-server options, as "--maxmemory", "1mb".
func Args(args ...string) Option {
	return func(s *Server) { s.args = append(s.args, args...) }
}

// Server is a redis-server process, or one that a test stopped.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string // from the options
	tls  bool
	ca   *certs.CA

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server and waits until it answers PING; it is killed
// when the test ends. Without redis-server the test is skipped.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := newServer(t, opts...)
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

func newServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (Debian: apt-get install redis-server); .ci/run installs it")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: freeport.Port(t)}
	for _, o := range opts {
		o(s)
	}
	if s.tls {
		s.writeCerts()
	}
	return s
}

// Addr is the server's address, 127.0.0.1:port; it stays the same when
// the server is stopped and started again.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// Dir is the server's directory: its log (redis.log) and any files.
func (s *Server) Dir() string { return s.dir }

// Log is what the server logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(b)
}

// CAPEM is the PEM of the CA that issued a TLS server's certificate, as a
// redis_tls_ca_file holds it; nil without TLS.
func (s *Server) CAPEM() []byte {
	if s.ca == nil {
		return nil
	}
	return s.ca.PEM()
}

// CAPool is a pool with the CA of a TLS server; nil without TLS.
func (s *Server) CAPool() *x509.CertPool {
	if s.ca == nil {
		return nil
	}
	return s.ca.Pool()
}

// Start starts the server again, on the same port, after Stop, and waits
// until it answers. Its data is gone: nothing is persisted.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatal("redistest: Start while the server runs")
	}
	s.startLocked(s.commandArgs())
}

// commandArgs are redis-server's arguments: no persistence, loopback, the
// log in the directory, then the options'.
func (s *Server) commandArgs() []string {
	args := []string{
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--protected-mode", "no",
	}
	if s.tls {
		args = append(args,
			"--port", "0",
			"--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", filepath.Join(s.dir, "server.crt"),
			"--tls-key-file", filepath.Join(s.dir, "server.key"),
			"--tls-ca-cert-file", filepath.Join(s.dir, "ca.crt"),
			"--tls-auth-clients", "no")
	} else {
		args = append(args, "--port", strconv.Itoa(s.port))
	}
	return append(args, s.args...)
}

func (s *Server) startLocked(args []string) {
	s.t.Helper()
	cmd := exec.Command(s.bin, args...)
	out, err := os.OpenFile(filepath.Join(s.dir, "redis.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.cmd = nil
			out, _ := os.ReadFile(filepath.Join(s.dir, "redis.out"))
			s.t.Fatalf("redis-server exited: %s\n%s%s", cmd.ProcessState, out, s.Log())
		default:
		}
		if s.answers() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server did not answer PING on %s within 20s: %s", s.Addr(), s.Log())
}

// answers says whether the server replies to PING: any reply, an error
// asking to log in included, means it is up.
func (s *Server) answers() bool {
	var c net.Conn
	var err error
	d := net.Dialer{Timeout: time.Second}
	if s.tls {
		c, err = tls.DialWithDialer(&d, "tcp", s.Addr(), &tls.Config{RootCAs: s.ca.Pool(), ServerName: "127.0.0.1"})
	} else {
		c, err = d.Dial("tcp", s.Addr())
	}
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-"))
}

// Stop kills the server (SIGKILL: as a crash, and as good as any stop for
// a server that keeps nothing) and waits until it is gone. A server that
// is not running is no error.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd, s.done = nil, nil
}

// Restart stops the server and starts it again on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Pause stops the process (SIGSTOP): the kernel still accepts connections
// on its port, but nothing is answered until Resume.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("redistest: %v to a server that is not running", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// CLI runs redis-cli against the server with the arguments and returns
// its output; a failure fails the test. It does not log in: give
// "--user", "--pass" in args for a server that needs it.
func (s *Server) CLI(args ...string) string {
	s.t.Helper()
	base := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.port)}
	if s.tls {
		base = append(base, "--tls", "--cacert", filepath.Join(s.dir, "ca.crt"))
	}
	return cli(s.t, append(base, args...)...)
}

func cli(t testing.TB, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not installed (Debian: apt-get install redis-tools); .ci/run installs redis-server, which brings it")
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (s *Server) writeCerts() {
	s.t.Helper()
	ca, err := certs.NewCA("redistest CA")
	if err != nil {
		s.t.Fatal(err)
	}
	cert, err := ca.Issue(time.Now().Add(24*time.Hour), "127.0.0.1", "localhost")
	if err != nil {
		s.t.Fatal(err)
	}
	chain, key, err := certs.PEM(cert)
	if err != nil {
		s.t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.crt": ca.PEM(), "server.crt": chain, "server.key": key} {
		if err := os.WriteFile(filepath.Join(s.dir, name), data, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	s.ca = ca
}

// StartSentinel starts a Sentinel (redis-server --sentinel) that monitors
// master under the name, with a quorum of 1, and waits until it knows the
// master's address. Options apply as to Start (TLS is not supported
// here).
func StartSentinel(t testing.TB, name string, master *Server, opts ...Option) *Server {
	t.Helper()
	s := newServer(t, opts...)
	conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s 127.0.0.1 %d 1\n",
		s.port, s.dir, filepath.Join(s.dir, "redis.log"), name, master.port)
	// Sentinel rewrites its configuration file, so it must be its own.
	file := filepath.Join(s.dir, "sentinel.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	s.mu.Lock()
	s.startLocked([]string{file, "--sentinel"})
	s.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.CLI("SENTINEL", "get-master-addr-by-name", name), strconv.Itoa(master.port)) {
		if time.Now().After(deadline) {
			t.Fatalf("sentinel does not know master %s: %s", name, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// StartCluster starts n (at least 3) masters with cluster-enabled, has
// redis-cli --cluster create share the slots among them, and waits until
// every node says cluster_state:ok. Options apply to every node.
func StartCluster(t testing.TB, n int, opts ...Option) []*Server {
	t.Helper()
	nodes := make([]*Server, n)
	addrs := make([]string, n)
	for i := range nodes {
		bus := freeport.Port(t)
		o := append([]Option{Args(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "5000")}, opts...)
		nodes[i] = Start(t, o...)
		addrs[i] = nodes[i].Addr()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	cli(t, append(args, "--cluster-yes")...)
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range nodes {
		for !strings.Contains(s.CLI("CLUSTER", "INFO"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s: %s", s.Addr(), s.CLI("CLUSTER", "INFO"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}
