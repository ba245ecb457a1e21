package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
)

// Source is a local address new connections may come from, and the name
// they say EHLO with there: a destination compares the two (and the
// address's PTR), so each address has its own.
type Source struct {
	Addr netip.Addr
	Helo string // default Config.Helo
}

func checkHelo(name string) error {
	if strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("relay: Helo %q contains spaces or control characters", name)
	}
	return nil
}

// sourceList is the sources of one address family. Several are used in
// turn, one per new connection, so that each address sends a share of the
// mail (and builds its own reputation with the destinations).
type sourceList struct {
	sources []Source
	next    atomic.Uint64
}

func (r *Relay) sourcesFor(ip netip.Addr) *sourceList {
	if ip.Is4() {
		return &r.ipv4
	}
	return &r.ipv6
}

// source returns the source for a new connection to ip, and the EHLO name
// to say there: the next of ip's family, or, if there is none, no address
// (the kernel picks) and Config.Helo.
func (r *Relay) source(ip netip.Addr) Source {
	l := r.sourcesFor(ip)
	if len(l.sources) == 0 {
		return Source{Helo: r.cfg.Helo}
	}
	return l.sources[(l.next.Add(1)-1)%uint64(len(l.sources))]
}

// CheckLocal reports whether new connections can come from addr: whether
// a socket can be bound to it, as dial binds one. That is what counts,
// rather than the addresses the interfaces list, which leave out those
// routed to the machine as a whole (AnyIP, "ip route add local ...") and
// include IPv6 addresses that are still tentative and cannot be bound.
// A UDP socket is bound rather than a TCP listener, so that nothing
// listens, even for a moment.
func CheckLocal(addr netip.Addr) error {
	network := "udp6"
	if addr.Is4() {
		network = "udp4"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		if op, ok := errors.AsType[*net.OpError](err); ok {
			err = op.Err // "bind: cannot assign requested address", without the address again
		}
		return fmt.Errorf("%s is not an address of this machine: %v", addr, err)
	}
	return c.Close()
}
