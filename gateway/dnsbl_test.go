package gateway_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// The dnsbl plugin, built, through the gateway: a listed client is
// refused at RCPT in Cloudflare's words, except for postmaster; a client
// on the allowlist by its confirmed name, a list that fails and a list
// that refuses the query let the client through.
func TestDNSBLPlugin(t *testing.T) {
	e := startEnv(t, envOptions{plugins: fmt.Sprintf(`
[[plugin]]
name = "dnsbl"
path = %q
capabilities = ["dns"]
stages = ["rcpt"]
[plugin.config]
url = "https://ours.test/blocked"
allow_names = ["trusted.example"]
[[plugin.config.zone]]
name = "bl.test"
[[plugin.config.zone]]
name = "other.test"
%s
[[plugin.config.rule]]
match = "postmaster@ours.test"
action = "forward"
to = "me@dest.test"
`, wasmbuild.ForTest(t, "./plugins/dnsbl"), routerPlugin(t))})
	e.addRecords(t, `
2.0.0.127.bl.test.          300 IN A   127.0.0.2
2.0.0.127.other.test.       300 IN A   127.0.0.5
3.0.0.127.bl.test.          300 IN A   127.0.0.2
3.0.0.127.in-addr.arpa.     300 IN PTR mx1.trusted.example.
mx1.trusted.example.        300 IN A   127.0.0.3
5.0.0.127.bl.test.          300 IN A   127.255.255.254
`)
	e.dns.Fail("4.0.0.127.bl.test.", dns.RcodeServerFailure)

	c := dialFrom(t, e.addr, "127.0.0.2")
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "RCPT from a listed client", c.Rcpt("info@ours.test", nil), 554, smtp.EnhancedCode{5, 7, 1},
		"127.0.0.2 found on one or more DNSBLs (bl.test, other.test). Refer to https://ours.test/blocked")
	if err := c.Rcpt("postmaster@ours.test", nil); err != nil {
		t.Errorf("RCPT postmaster from a listed client: %v, want 250", err)
	}

	for _, from := range []string{"127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		c := dialFrom(t, e.addr, from)
		if err := c.Mail("alice@example.org", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("info@ours.test", nil); err != nil {
			t.Errorf("RCPT from %s: %v, want 250", from, err)
		}
	}
	if logs := e.logs.String(); !strings.Contains(logs, "bl.test refused the query for 127.0.0.5 (answer 127.255.255.254)") {
		t.Errorf("no warning about the refused query in the log:\n%s", logs)
	}
}
