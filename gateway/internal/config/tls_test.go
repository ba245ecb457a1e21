package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestACMEAndMTASTSSettings(t *testing.T) {
	c, err := Parse("/etc/sluice/gateway.toml", []byte(adminBase+`
[tls]
acme = true
acme_email = "postmaster@example.test"
[https]
listen = ["0.0.0.0:443", "[::]:443"]
[mta_sts]
mode = "enforce"
mx = ["MX.Example.test", "*.Example.TEST"]
`))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := c.MTASTSPolicy()
	if !ok {
		t.Fatal("mode enforce publishes no policy")
	}
	if got := strings.Join(p.MX, " "); got != "mx.example.test *.example.test" {
		t.Errorf("mx patterns = %q, want them lower-cased", got)
	}
	if p.MaxAge != 7*24*time.Hour {
		t.Errorf("max_age default = %v, want a week", p.MaxAge)
	}
	if got, want := c.ACMEDir(), filepath.Join(DefaultDataDir, "acme"); got != want {
		t.Errorf("ACMEDir = %q, want %q", got, want)
	}

	c, err = Parse("/etc/sluice/gateway.toml", []byte("data_dir = \"state\"\n"+adminBase+`
[smtp]
tls_self_signed = true
[https]
listen = ["127.0.0.1:8443"]
[mta_sts]
mode = "testing"
max_age = "24h"
`))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := c.MTASTSPolicy(); strings.Join(p.MX, " ") != "mx.example.test" || p.MaxAge != 24*time.Hour {
		t.Errorf("policy = %+v, want mx the hostname and max_age 24h", p)
	}
	if got := c.ACMEDir(); got != "/etc/sluice/state/acme" {
		t.Errorf("ACMEDir = %q, want data_dir relative to the file", got)
	}
}
