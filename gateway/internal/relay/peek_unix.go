//go:build unix

package relay

import (
	"errors"
	"net"
	"syscall"
)

// sentSomething reports whether the destination has sent bytes on conn,
// or closed it, that nobody has read yet. It looks without reading or
// waiting: a peek at the socket, which Go keeps non-blocking, so that
// "nothing" comes back at once as EAGAIN. An error is taken as something:
// the connection is then replaced, which is always safe.
func sentSomething(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var peekErr error
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		return true // done, whatever it found: never wait
	})
	if err != nil {
		return true
	}
	// Without an error, a byte is waiting or (0 bytes) the destination
	// closed; EAGAIN says there is nothing.
	return !errors.Is(peekErr, syscall.EAGAIN) && !errors.Is(peekErr, syscall.EWOULDBLOCK)
}
