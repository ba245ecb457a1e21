package config

import (
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
)

func TestCapabilitiesAndScoring(t *testing.T) {
	c, err := Parse("gateway.toml", []byte(`
hostname = "mx.example.test"
domains = ["example.test"]
[srs]
secrets = ["0123456789abcdef0123"]
[scoring]
reject = 15.0
quarantine = 6
[[plugin]]
name = "spam"
path = "spam.wasm"
capabilities = ["headers", "dns", "log"]
[[plugin]]
name = "router"
path = "router.wasm"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Plugin[0].Granted(); got != abi.CapHeaders|abi.CapDNS {
		t.Errorf("spam granted %q, want headers,dns (log is always granted)", got)
	}
	if got := c.Plugin[1].Granted(); got != 0 {
		t.Errorf("router granted %q, want nothing by default", got)
	}
	if c.Scoring != (Scoring{Reject: 15, Quarantine: 6}) {
		t.Errorf("scoring = %+v", c.Scoring)
	}
}

func TestHTTPSettings(t *testing.T) {
	c, err := Parse("gateway.toml", []byte(`
hostname = "mx.example.test"
domains = ["example.test"]
[srs]
secrets = ["0123456789abcdef0123"]
[[plugin]]
name = "rspamd"
path = "rspamd.wasm"
capabilities = ["headers", "body", "http"]
http_hosts = ["127.0.0.1:11333", "[::1]:11333", "rspamd.internal:443"]
http_timeout = "3s"
http_max_response = "256KiB"
`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Plugin[0]
	if !p.Granted().Has(abi.CapHTTP) || len(p.HTTPHosts) != 3 || p.HTTPTimeout.D() != 3e9 || p.HTTPMaxResponse != 256<<10 {
		t.Errorf("plugin = %+v", p)
	}
}
