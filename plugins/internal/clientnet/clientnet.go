// Package clientnet is what the greylist and ratelimit plugins share
// about clients: the networks a setting lists, the network (ipv4_prefix,
// ipv6_prefix) that stands for one client, so that a sender whose attempts
// leave from several addresses of its pool is one client, and the domain
// suffixes that a client's name or an authenticated domain is under.
package clientnet

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/sluice-mail/sluice/sdk"
)

// Networks reads the setting key's list of networks: "192.0.2.0/24",
// "2001:db8::/32" or a lone address each.
func Networks(key string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, n := range list {
		p, err := parseNetwork(n)
		if err != nil {
			return nil, &sdk.SettingError{Key: key, Err: fmt.Errorf("%s %d: %w", key, i+1, err)}
		}
		out = append(out, p)
	}
	return out, nil
}

func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a network", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Contains reports whether the client's address a is in one of nets; an
// IPv4 address mapped in IPv6 is the IPv4 address.
func Contains(nets []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Prefixes are how many leading bits of a client's address are the client:
// the settings ipv4_prefix and ipv6_prefix.
type Prefixes struct{ IPv4, IPv6 int }

// Set sets the prefixes that the settings give (nil: not given): 8 to 32
// bits in IPv4, 16 to 128 in IPv6.
func (p *Prefixes) Set(ipv4, ipv6 *int) error {
	if ipv4 != nil {
		if *ipv4 < 8 || *ipv4 > 32 {
			return &sdk.SettingError{Key: "ipv4_prefix", Err: fmt.Errorf("ipv4_prefix %d: want 8 to 32", *ipv4)}
		}
		p.IPv4 = *ipv4
	}
	if ipv6 != nil {
		if *ipv6 < 16 || *ipv6 > 128 {
			return &sdk.SettingError{Key: "ipv6_prefix", Err: fmt.Errorf("ipv6_prefix %d: want 16 to 128", *ipv6)}
		}
		p.IPv6 = *ipv6
	}
	return nil
}

// Of returns the client network of the valid, unmapped address a.
func (p Prefixes) Of(a netip.Addr) netip.Prefix {
	bits := p.IPv4
	if a.Is6() {
		bits = p.IPv6
	}
	n, _ := a.Prefix(bits)
	return n
}

// Domains reads the setting key's list of domains, each meaning itself
// and the names under it: lower case, without a leading or trailing dot
// (".example.com" and "example.com." both read as example.com).
func Domains(key string, list []string) ([]string, error) {
	var out []string
	for i, d := range list {
		d = strings.ToLower(strings.Trim(d, "."))
		if d == "" || strings.ContainsAny(d, "@ \t/") {
			return nil, &sdk.SettingError{Key: key, Err: fmt.Errorf("%s %d: %q is not a domain", key, i+1, list[i])}
		}
		out = append(out, d)
	}
	return out, nil
}

// Under reports whether name is one of the domains of list, or a name
// under one; list holds them in lower case, without a trailing dot.
func Under(name string, list []string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, d := range list {
		if name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}
