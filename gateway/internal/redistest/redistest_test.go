package redistest

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if out := s.CLI("SET", "k", "v"); !strings.Contains(out, "OK") {
		t.Fatalf("SET: %q", out)
	}
	addr := s.Addr()
	s.Stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("stopped server still takes connections")
	}
	s.Start()
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr(), addr)
	}
	if out := s.CLI("GET", "k"); strings.TrimSpace(out) != "" {
		t.Fatalf("data survived a restart: %q", out)
	}
	s.Restart()
	if out := s.CLI("PING"); !strings.Contains(out, "PONG") {
		t.Fatalf("PING after Restart: %q", out)
	}
}

func TestPauseResume(t *testing.T) {
	s := Start(t)
	s.Pause()
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("*1\r\n$4\r\nPING\r\n"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 16)); err == nil {
		t.Fatal("paused server answered")
	}
	s.Resume()
	if !s.answers() {
		t.Fatal("resumed server does not answer")
	}
}

func TestUserAndTLS(t *testing.T) {
	s := Start(t, User("sluice", "secret"), TLS())
	if out := s.CLI("PING"); !strings.Contains(out, "NOAUTH") {
		t.Fatalf("PING without login: %q", out)
	}
	if out := s.CLI("--user", "sluice", "--pass", "secret", "--no-auth-warning", "PING"); !strings.Contains(out, "PONG") {
		t.Fatalf("PING as sluice: %q", out)
	}
	if s.CAPool() == nil || len(s.CAPEM()) == 0 {
		t.Fatal("TLS server without a CA")
	}
}

func TestSentinel(t *testing.T) {
	m := Start(t)
	s := StartSentinel(t, "mymaster", m)
	if out := s.CLI("SENTINEL", "get-master-addr-by-name", "mymaster"); !strings.Contains(out, "127.0.0.1") {
		t.Fatalf("sentinel: %q", out)
	}
}

func TestCluster(t *testing.T) {
	nodes := StartCluster(t, 3)
	if out := nodes[0].CLI("-c", "SET", "a", "1"); !strings.Contains(out, "OK") {
		t.Fatalf("SET in cluster: %q", out)
	}
}
