package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// At start, and again when a reload changes the outbound addresses, the
// log warns about each one without a PTR record (the test zone has none).
func TestOutboundAddressWithoutPTRIsWarnedAtStartAndReload(t *testing.T) {
	e := startEnv(t, envOptions{relay: "[[relay.source]]\naddress = \"127.0.0.3\"\nhelo = \"out3.ours.test\"\n"})
	const noPTR = `level=WARN msg="outbound address has no PTR record: many destinations refuse or junk its mail; have its provider set one to the HELO name" address=%s helo=%s`
	waitFor(t, "the warning about 127.0.0.3", func() bool {
		return strings.Contains(e.logs.String(), fmt.Sprintf(noPTR, "127.0.0.3", "out3.ours.test"))
	})

	more := strings.Replace(e.cfgText, "[srs]\n", "[[relay.source]]\naddress = \"127.0.0.4\"\n[srs]\n", 1)
	replaceFile(t, e.cfgPath, []byte(more))
	if err := e.gw.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the warning about 127.0.0.4", func() bool {
		return strings.Contains(e.logs.String(), fmt.Sprintf(noPTR, "127.0.0.4", "mx.ours.test"))
	})
}

// Sources of one family only: at start the log warns of the other, whose
// mail leaves from an address the kernel picks; with [relay] ipv6 = false
// IPv4 sources are the whole story, and with no source at all the kernel
// picks every address, as the operator chose.
func TestSourceFamilyWithoutSourceIsWarnedAtStart(t *testing.T) {
	const noIPv6 = `level=WARN msg="no IPv6 [[relay.source]]: mail to IPv6 destinations leaves from an address the kernel picks`
	v4 := "[[relay.source]]\naddress = \"127.0.0.3\"\nhelo = \"out3.ours.test\"\n"
	for _, c := range []struct {
		name, relay string
		warned      bool
	}{
		{"IPv4 sources only", v4, true},
		{"IPv4 sources, IPv6 off", "ipv6 = false\n" + v4, false},
		{"no sources", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := startEnv(t, envOptions{relay: c.relay})
			// Logged before start returns: no DNS is asked.
			if got := strings.Contains(e.logs.String(), noIPv6); got != c.warned {
				t.Errorf("warned %v, want %v; the log:\n%s", got, c.warned, e.logs.String())
			}
			if strings.Contains(e.logs.String(), "no IPv4 [[relay.source]]") {
				t.Errorf("warned of IPv4, which has a source or none is set:\n%s", e.logs.String())
			}
		})
	}
}
