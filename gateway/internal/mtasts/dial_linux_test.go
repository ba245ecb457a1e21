package mtasts

import (
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// blackHole listens on [::1]:port without ever accepting, its queue
// full, so that the kernel drops further SYNs to it: a connection attempt
// hangs, as one to an address whose packets go nowhere does. It skips the
// test where that cannot be had (no IPv6 loopback, or a kernel that
// answers anyway).
func blackHole(t *testing.T, port int) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	f := os.NewFile(uintptr(fd), "black hole")
	t.Cleanup(func() { f.Close() })
	syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1)
	if err := syscall.Bind(fd, &syscall.SockaddrInet6{Port: port, Addr: [16]byte{15: 1}}); err != nil {
		t.Skipf("cannot bind [::1]:%d: %v", port, err)
	}
	// Backlog 0: the accept queue holds one connection; SYNs beyond
	// it are dropped.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("::1", strconv.Itoa(port))
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			continue
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return // it swallows SYNs now
		}
		t.Skipf("the black hole answers: %v", err)
	}
	t.Skip("the black hole's queue never filled")
}

// A policy host whose IPv6 address swallows packets is still reached on
// its IPv4 one: each address gets its share of the fetch's time, rather
// than the first using it all.
func TestFetchSurvivesBlackHoledAddress(t *testing.T) {
	f, ps, fetched := fetchSetup(t, "mta-sts.example.test", "v=STSv1; id=1", serveText(enforcePolicy),
		func(c *Config) { c.Timeout = 6 * time.Second })
	blackHole(t, ps.port)
	if err := ps.dns.SetRecords("$TTL 300\n" +
		"mta-sts.example.test. IN AAAA ::1\n" +
		"mta-sts.example.test. IN A 127.0.0.1\n" +
		"_mta-sts.example.test. IN TXT \"v=STSv1; id=1\"\n"); err != nil {
		t.Fatal(err)
	}
	p, ok := f.Policy(t.Context(), "example.test")
	if !ok || p.Mode != Enforce {
		t.Fatalf("Policy = %+v, %v; want the enforce policy (fetches: %v)", p, ok, *fetched)
	}
	if n := ps.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}
