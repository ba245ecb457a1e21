package abi

import "testing"

func TestAligned(t *testing.T) {
	cases := []struct {
		d    DMARC
		want bool
	}{
		{DMARC{}, false},
		{DMARC{SPFAligned: true}, true},
		{DMARC{DKIMAligned: true}, true},
		{DMARC{Result: "fail"}, false},
	}
	for _, c := range cases {
		if got := c.d.Aligned(); got != c.want {
			t.Errorf("%+v.Aligned() = %v, want %v", c.d, got, c.want)
		}
	}
}

func TestAuthenticated(t *testing.T) {
	cases := []struct {
		name string
		a    Auth
		want bool
	}{
		{"nothing checked", Auth{}, false},
		{"SPF pass", Auth{SPF: SPF{Result: "pass"}}, true},
		{"SPF softfail", Auth{SPF: SPF{Result: "softfail"}}, false},
		{"a later DKIM pass", Auth{SPF: SPF{Result: "fail"}, DKIM: []DKIM{{Result: "fail"}, {Result: "pass"}}}, true},
		{"DKIM neither", Auth{DKIM: []DKIM{{Result: "neutral"}, {Result: "temperror"}}}, false},
		// A HELO pass alone does not vouch for the message.
		{"HELO pass only", Auth{SPF: SPF{Result: "none", Helo: "pass"}}, false},
	}
	for _, c := range cases {
		if got := c.a.Authenticated(); got != c.want {
			t.Errorf("%s: Authenticated() = %v, want %v", c.name, got, c.want)
		}
	}
}
