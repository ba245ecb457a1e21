package clientnet

import (
	"net/netip"
	"testing"
)

func TestNetworks(t *testing.T) {
	nets, err := Networks("allow_networks", []string{"192.0.2.7/24", "2001:db8::/32", "::ffff:198.51.100.1"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"192.0.2.200": true, "::ffff:192.0.2.1": true, "2001:db8:1::1": true, "198.51.100.1": true,
		"198.51.100.2": false, "2001:db9::1": false,
	} {
		if got := Contains(nets, netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s in %v: %v, want %v", addr, nets, got, want)
		}
	}
	if Contains(nets, netip.Addr{}) {
		t.Error("no address is in the networks")
	}
	for _, c := range []struct{ list, want string }{
		{"192.0.2.0/33", `allow_networks 1: "192.0.2.0/33" is not a network`},
		{"example.org", `allow_networks 1: "example.org" is not an address or a network`},
	} {
		if _, err := Networks("allow_networks", []string{c.list}); err == nil || err.Error() != c.want {
			t.Errorf("%s: error %v, want %q", c.list, err, c.want)
		}
	}
}

func TestPrefixes(t *testing.T) {
	p := Prefixes{IPv4: 24, IPv6: 64}
	for addr, want := range map[string]string{"192.0.2.7": "192.0.2.0/24", "2001:db8:1:2:3::4": "2001:db8:1:2::/64"} {
		if got := p.Of(netip.MustParseAddr(addr)).String(); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
	v4, v6 := 32, 128
	if err := p.Set(&v4, nil); err != nil || p != (Prefixes{32, 64}) {
		t.Errorf("ipv4_prefix 32: %+v, %v", p, err)
	}
	if err := p.Set(nil, &v6); err != nil || p != (Prefixes{32, 128}) {
		t.Errorf("ipv6_prefix 128: %+v, %v", p, err)
	}
	v4, v6 = 7, 129
	if err := p.Set(&v4, nil); err == nil || err.Error() != "ipv4_prefix 7: want 8 to 32" {
		t.Errorf("ipv4_prefix 7: %v", err)
	}
	if err := p.Set(nil, &v6); err == nil || err.Error() != "ipv6_prefix 129: want 16 to 128" {
		t.Errorf("ipv6_prefix 129: %v", err)
	}
}

func TestUnder(t *testing.T) {
	list := []string{"google.com", "example.org"}
	for name, want := range map[string]bool{
		"google.com": true, "Mail-1.Google.COM.": true, "notgoogle.com": false, "example.org.evil.test": false,
	} {
		if got := Under(name, list); got != want {
			t.Errorf("%s under %v: %v, want %v", name, list, got, want)
		}
	}
}
