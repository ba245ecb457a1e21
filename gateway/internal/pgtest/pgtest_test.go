package pgtest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// psql runs a statement as the test role over TCP with the DSN's
// password, as a client of the gateway would connect.
func psql(s *Server, sql string) (string, error) {
	out, err := exec.Command(filepath.Join(s.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", s.DSN(), "-c", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestStartStopStart(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.DSN(), "postgres://sluice:") || !strings.Contains(s.DSN(), "@127.0.0.1:") {
		t.Fatalf("DSN = %s", s.DSN())
	}
	if out, err := psql(s, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('here'); SELECT current_user"); err != nil || out != "sluice" {
		t.Fatalf("as the test role: %q, %v", out, err)
	}
	s.Stop()
	if out, err := psql(s, "SELECT 1"); err == nil {
		t.Fatalf("stopped server answered: %q", out)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := psql(s, "SELECT v FROM kept"); err != nil || out != "here" {
		t.Fatalf("after restart: %q, %v", out, err)
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	s := Start(t)
	dsn := strings.Replace(s.DSN(), Password, "wrong", 1)
	out, err := exec.Command(filepath.Join(s.bin, "psql"), "-X", "-d", dsn, "-c", "SELECT 1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "password authentication failed") {
		t.Fatalf("wrong password: %v, %s", err, out)
	}
}
