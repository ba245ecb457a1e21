// Package freeport finds loopback ports for tests that start a server
// which cannot be told to pick its own port and report it (the sluice
// binary, pebble).
//
// A port from listening on :0 and closing is in the kernel's ephemeral
// range, which the kernel also hands to outgoing connections: on a busy
// machine some connection takes it before the server binds it. Ports
// below that range (32768-60999 on Linux) are only ever taken by
// binding them explicitly, so a random free one of those stays free.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Port returns a TCP port on 127.0.0.1 that is free now, below the
// ephemeral range.
func Port(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free port found in 100 tries")
	return 0
}

// Addr returns "127.0.0.1:port" for a Port.
func Addr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(Port(t))
}
