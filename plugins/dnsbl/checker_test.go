package main

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// Bad settings are refused, naming the setting at fault.
func TestConfigRefused(t *testing.T) {
	const zone = "\n[[zone]]\nname = \"bl.example\"\n"
	for _, c := range []struct{ config, key, text string }{
		{``, "zone", "no [[plugin.config.zone]]"},
		{`refuse_at = "data"` + zone, "refuse_at", `refuse_at "data": want rcpt or connect`},
		{`on_temperror = "reject"` + zone, "on_temperror", "want continue or tempfail"},
		{`allow_ips = ["192.0.2.0/24", "nonsense"]` + zone, "allow_ips.1", `"nonsense"`},
		{`allow_names = ["not a name"]` + zone, "allow_names.0", "not a domain name"},
		{zone + zone, "zone.1.name", "listed twice"},
		{"[[zone]]\nname = \"bl..example\"", "zone.0.name", "not a domain name"},
		{"[[zone]]\nname = \"bl.example\"\ncodes = [\"127.0.0.9-127.0.0.2\"]", "zone.0.codes", "want an IPv4 address or a range"},
		{"[[zone]]\nname = \"bl.example\"\ncodes = [\"127.255.255.254\"]", "zone.0.codes", "the list refused the query"},
		{"[[zone]]\nname = \"bl.example\"\nsymbol = \"X\"", "zone.0.symbol", "only a zone with a score"},
		{"[[zone]]\nname = \"bl.example\"\ncolour = 1", "zone.colour", "unknown setting"},
		{strings.Repeat(zone, 11), "zone", "at most 10"},
	} {
		_, err := sdktest.Configure(&plugin{}, c.config)
		var se *sdk.SettingError
		if err == nil || !errors.As(err, &se) || se.Key != c.key || !strings.Contains(err.Error(), c.text) {
			t.Errorf("config %q: %v; want a SettingError at %s saying %q", c.config, err, c.key, c.text)
		}
	}
}

// An IPv6 client is asked about in nibble form, and every list is asked
// in one call of the host.
func TestIPv6NibbleForm(t *testing.T) {
	const config = "[[zone]]\nname = \"bl.example\"\n[[zone]]\nname = \"other.example\"\n"
	name := "9.9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.other.example"
	p := sdktest.New(t, &plugin{}, config, sdktest.Record(abi.TypeA, name, "127.0.0.2"))
	v := p.Handle(t, &sdk.Request{Stage: abi.StageRcpt, ClientIP: "2001:db8::99", Rcpt: "a@b.example"})
	if want := "reject 554 5.7.1 2001:db8::99 found on one or more DNSBLs (other.example)."; sdktest.Describe(v) != want {
		t.Errorf("got %q, want %q", sdktest.Describe(v), want)
	}
	if got := reversed(netip.MustParseAddr("::ffff:192.0.2.1").Unmap()); got != "1.2.0.192" {
		t.Errorf("reversed(::ffff:192.0.2.1) = %q", got)
	}
}

// Without the dns capability nothing is refused: the plugin cannot know.
func TestNoCapability(t *testing.T) {
	p := sdktest.New(t, &plugin{}, "on_temperror = \"continue\"\n[[zone]]\nname = \"bl.example\"\n",
		sdktest.Deny(abi.CapDNS), sdktest.Record(abi.TypeA, "99.2.0.192.bl.example", "127.0.0.2"))
	v := p.Handle(t, &sdk.Request{Stage: abi.StageRcpt, ClientIP: "192.0.2.99", Rcpt: "a@b.example"})
	if v.Action != abi.Continue {
		t.Errorf("got %s, want continue", sdktest.Describe(v))
	}
}
