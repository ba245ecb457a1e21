// Package pgtest starts a real PostgreSQL for tests: Debian's package
// postgresql, a fresh cluster (initdb) in a temporary directory, listening
// on 127.0.0.1 and a Unix socket in that directory. It holds a database
// and a role with a password, as an operator would create them, so tests
// log in the way the gateway does: over TCP with a password (scram-sha-256).
//
// PostgreSQL refuses to run as root. Tests run as root here and in CI, so
// as root the server runs as Debian's "postgres" user, in a directory
// that user owns.
package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/freeport"
)

// The database and the role the tests use. The role owns the database,
// which in PostgreSQL 15 and later is what lets it create tables in its
// public schema.
const (
	Database = "sluice"
	User     = "sluice"
	Password = "pgtest-secret-7f3a"
)

// Server is a running (or Stopped) PostgreSQL.
type Server struct {
	Port int

	bin  string // the directory of postgres, initdb, psql
	dir  string // socket directory, log; data in dir/data
	cred *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// DSN is the URL tests hand to the store: the role with its password,
// over TCP on loopback.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", User, Password, s.Port, Database)
}

// Log returns what the server logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	return string(b)
}

// Start creates a cluster, starts PostgreSQL on a free loopback port and
// waits until it accepts connections; it is stopped and its directory
// removed when the test ends. Without PostgreSQL the test is skipped.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binDir()
	if bin == "" {
		t.Skip("PostgreSQL is not installed (Debian: apt-get install postgresql); .ci/run installs it")
	}
	// Not t.TempDir: its parent is 0700 and owned by root, which the
	// postgres user could not enter.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{bin: bin, dir: dir}
	t.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root and there is no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte("unused\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s.cred != nil {
		os.Chown(pwfile, int(s.cred.Uid), int(s.cred.Gid))
	}
	// Trust on the socket (the setup below), passwords over TCP (the
	// tests); no fsync: the data lives as long as the test.
	s.run(t, "initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	s.Port = freeport.Port(t)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	s.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", User, Password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", Database, User))
	return s
}

// Exec runs the statements in the database db as the superuser
// postgres, over the socket: for tests that make other roles and grants.
// It fails the test if one fails.
func (s *Server) Exec(t testing.TB, db string, statements ...string) {
	t.Helper()
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.dir, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-d", db}
	for _, q := range statements {
		args = append(args, "-c", q)
	}
	s.run(t, "psql", args...)
}

// Start starts the server again after Stop, on the same port with the
// same data. It returns once the server accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("pgtest: already running")
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"),
		"-k", s.dir, "-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("pgtest: postgres exited: %s", s.Log())
		default:
		}
		if s.ready() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("pgtest: postgres did not accept connections on port %d within 60s: %s", s.Port, s.Log())
}

// ready asks pg_isready, over TCP as clients connect.
func (s *Server) ready() bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return exec.Command(filepath.Join(s.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)).Run() == nil
}

// Stop shuts the server down (fast shutdown: open connections are
// closed) and waits until it has exited; its port is then closed. It does
// nothing if the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// run runs one of PostgreSQL's programs as the server's user.
func (s *Server) run(t testing.TB, prog string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(s.bin, prog), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: %s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
}

// binDir is the newest of Debian's /usr/lib/postgresql/<version>/bin
// with a postgres in it, or "".
func binDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d
		}
	}
	return ""
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}
