package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildSluice builds this binary into dir and returns its path.
func buildSluice(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// served is a running `sluice serve` whose log lines a test waits for.
type served struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs chan string // closed when serve closes its stderr
	seen []string
}

// startServe runs `bin serve -c cfgPath`. It is killed at the end of the
// test if stop did not end it.
func startServe(t *testing.T, bin, cfgPath string) *served {
	t.Helper()
	s := &served{t: t, cmd: exec.Command(bin, "serve", "-c", cfgPath), logs: make(chan string, 100)}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill() })
	go func() {
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			s.logs <- lines.Text()
		}
		close(s.logs)
	}()
	return s
}

// waitLog waits up to a minute for a log line that contains each of
// what, and returns it.
func (s *served) waitLog(what ...string) string {
	s.t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-s.logs:
			if !ok {
				s.t.Fatalf("serve exited before %q; it said:\n%s", what, strings.Join(s.seen, "\n"))
			}
			s.seen = append(s.seen, line)
			if !slices.ContainsFunc(what, func(w string) bool { return !strings.Contains(line, w) }) {
				return line
			}
		case <-timeout:
			s.t.Fatalf("no %q in the log:\n%s", what, strings.Join(s.seen, "\n"))
		}
	}
}

// runSluice runs the binary bin and returns its output and exit status,
// logging what it wrote to stderr.
func runSluice(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if stderr.Len() > 0 {
		t.Logf("sluice %s: %s", args[0], stderr.String())
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return stdout.String(), cmd.ProcessState.ExitCode()
}

// signal sends sig to serve.
func (s *served) signal(sig syscall.Signal) { s.cmd.Process.Signal(sig) }

// stop sends SIGTERM and checks that serve exits cleanly, and soon.
func (s *served) stop() {
	s.t.Helper()
	s.signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() {
		for range s.logs {
		}
		done <- s.cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			s.t.Errorf("serve after SIGTERM: %v", err)
		}
	case <-time.After(40 * time.Second):
		s.t.Error("serve did not stop on SIGTERM")
	}
}
