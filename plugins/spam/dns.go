package main

import (
	"errors"
	"net/netip"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// answer is what DNS said: yes, no, or nothing to go by (it failed, or
// the call's lookups are used up), which is never held against a sender.
type answer int

const (
	unknown answer = iota
	yes
	no
)

// resolves reports whether a HELO name has an address or a mail exchanger:
// A, then AAAA, then MX, stopping at the first answer. A name that does not
// exist has none, which one lookup tells.
func resolves(name string) answer {
	for _, qtype := range []uint16{abi.TypeA, abi.TypeAAAA, abi.TypeMX} {
		list, err := sdk.Lookup(qtype, name)
		switch {
		case errors.Is(err, sdk.ErrNotFound):
			return no
		case err != nil:
			return unknown
		case len(list) > 0:
			return yes
		}
	}
	return no
}

// uriblCheck looks the registrable domains of the message's URLs up in
// the configured URIBL zones (domain.zone, type A), in message order, at
// most c.uriblMax lookups. A zone that lists one domain is not asked about
// the others: its symbol counts once.
func (c *config) uriblCheck(f *findings, m *message) {
	if len(c.uribl) == 0 {
		return
	}
	lookups := 0
	listed := make([]bool, len(c.uribl))
	seen := map[string]bool{}
	for _, l := range m.links {
		if isIPHost(l.host) || !ascii(l.host) {
			continue
		}
		d := siteOf(l.host)
		if seen[d] {
			continue
		}
		seen[d] = true
		for i, z := range c.uribl {
			if listed[i] {
				continue
			}
			if lookups >= c.uriblMax {
				return
			}
			lookups++
			if listedIn(d+"."+z.Zone) == yes {
				listed[i] = true
				f.addScore(z.Symbol, z.Score)
			}
		}
	}
}

// listedIn reports whether a blocklist name has a listing address: one in
// 127.0.0.0/8 other than 127.0.0.1 and 127.255.255.0/24, which the big
// lists answer when they refuse to answer (a query through a public
// resolver, or over its limit); those are no listing.
func listedIn(name string) answer {
	addrs, err := sdk.LookupIP("ip4", name)
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		return no
	case err != nil:
		return unknown
	}
	for _, a := range addrs {
		switch {
		case a == refusedLocal || refused.Contains(a):
			sdk.Log(4, "URIBL "+name+" answered "+a.String()+": the list refused the query, which is no listing")
		case listing.Contains(a):
			return yes
		}
	}
	return no
}

var (
	listing      = netip.MustParsePrefix("127.0.0.0/8")
	refused      = netip.MustParsePrefix("127.255.255.0/24")
	refusedLocal = netip.MustParseAddr("127.0.0.1")
)

// ascii reports whether a host name is in ASCII: the zones are asked in
// A-labels, and a name in Unicode is not converted.
func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
