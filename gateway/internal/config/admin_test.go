package config

import (
	"strings"
	"testing"
	"time"
)

const adminBase = `
hostname = "mx.example.test"
domains = ["example.test"]
[srs]
secrets = ["0123456789abcdef0123"]
`

func TestAdminDefaultsAndOff(t *testing.T) {
	c, err := Parse("gateway.toml", []byte(adminBase))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.AdminListen(); got != "127.0.0.1:8025" {
		t.Errorf("default admin listener %q, want loopback 127.0.0.1:8025", got)
	}
	if c.Admin.WatchInterval != 0 {
		t.Errorf("watch_interval defaulted to %v here; the gateway picks it", c.Admin.WatchInterval.D())
	}

	c, err = Parse("gateway.toml", []byte(adminBase+"[admin]\nlisten = \"\"\nwatch_interval = \"500ms\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.AdminListen(); got != "" {
		t.Errorf(`listen = "" gave %q, want the listener off`, got)
	}
	if c.Admin.WatchInterval.D() != 500*time.Millisecond {
		t.Errorf("watch_interval = %v", c.Admin.WatchInterval.D())
	}
}

func TestAdminErrors(t *testing.T) {
	for src, want := range map[string]string{
		"[admin]\nlisten = \"localhost:8025\"\n": `gateway.toml:7: admin.listen: "localhost:8025": listen on an IP address, not "localhost"`,
		"[admin]\nlisten = \"127.0.0.1\"\n":      `gateway.toml:7: admin.listen: "127.0.0.1" is not host:port`,
		"[admin]\nwatch_interval = \"soon\"\n":   `gateway.toml:7: admin.watch_interval: not a duration`,
		"[admin]\nport = 8025\n":                 `gateway.toml:7: unknown key "port" in [admin]`,
	} {
		_, err := Parse("gateway.toml", []byte(adminBase+src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", src, err, want)
		}
	}
}
