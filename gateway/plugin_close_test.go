package gateway_test

import (
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// A plugin's 421 closes the session, as the code says (RFC 5321 §3.8):
// plugins/ratelimit with code = 421 stops a client that sends many
// messages over one connection.
func TestPlugin421ClosesSession(t *testing.T) {
	e := startEnv(t, envOptions{plugins: fmt.Sprintf(`
[[plugin]]
name = "ratelimit"
path = %q
capabilities = ["kv"]

[plugin.config]
code = 421

[[plugin.config.limit]]
count = "client"
max = 1
per = "1h"
`, wasmbuild.ForTest(t, "./plugins/ratelimit"))})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "second message", c.Mail("alice@example.org", nil), 421, smtp.EnhancedCode{4, 7, 1},
		"Client 127.0.0.1 exceeded 1 message per 1h, try again later")
	if err := c.Noop(); err == nil {
		t.Error("the session goes on after 421")
	}
}
