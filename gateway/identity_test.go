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
