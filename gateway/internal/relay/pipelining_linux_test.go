package relay

import (
	"context"
	"net"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The message and the end-of-data marker leave in one write: the
// destination reads them together, and the kernel sent two segments for
// the whole of DATA (the command, then message and marker), which it
// would not if the marker were written apart.
func TestMessageAndEndOfDataInOneWrite(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	d := &rawMX{ehlo: ehloPipelining}
	d.serve(t, lns[0])
	r := newTestRelay(t, port, oneMX(t, "127.0.0.2"))
	ctx := context.Background()
	txn, rcptErr, err := r.Begin(ctx, "example.test", "a@fwd.test", nil, "one@real.test")
	if err != nil || rcptErr != nil {
		t.Fatalf("Begin: %v, RCPT: %v", err, rcptErr)
	}
	defer txn.Close()
	before := dataSegmentsSent(t, txn.s.raw)
	if _, err := txn.Data(ctx, []byte(testMessage)); err != nil {
		t.Fatal(err)
	}
	if n := dataSegmentsSent(t, txn.s.raw) - before; n != 2 {
		t.Errorf("DATA took %d TCP segments, want 2: the command, then the message with its end", n)
	}
	wire := strings.TrimSuffix(testMessage, "\r\n")
	wire = strings.ReplaceAll(wire, "\r\n.", "\r\n..") + "\r\n.\r\n"
	if read := d.readWith(t, "From: a@origin.test"); read != wire {
		t.Errorf("the message arrived as %q, want it and its end in one read: %q", read, wire)
	}
}

// dataSegmentsSent is the number of TCP segments with data that conn has
// sent (Linux's tcpi_data_segs_out).
func dataSegmentsSent(t *testing.T, conn net.Conn) uint32 {
	t.Helper()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		info, sockErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || sockErr != nil {
		t.Fatal(err, sockErr)
	}
	return info.Data_segs_out
}
