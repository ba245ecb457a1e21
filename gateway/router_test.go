package gateway_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// The router's rules over several domains, as the built plugin runs them
// in the gateway: an internationalised domain written in one form and
// sent in the other, a domain that ignores dots in local parts, a
// wildcard, regular expressions whose captures make the destination, a
// local part sent decomposed.
const multiDomainRules = `
[plugin.config]
subaddress_separator = "+"
[[plugin.config.domain]]
name = "ours.test"
ignore_dots = true
[[plugin.config.rule]]
match = "firstlast@ours.test"
action = "forward"
to = "fl@dest.test"
[[plugin.config.rule]]
match = "Info@Shop.TEST"
action = "forward"
to = "shop@dest.test"
[[plugin.config.rule]]
match = "info@xn--bcher-kva.test"
action = "forward"
to = "books@dest.test"
[[plugin.config.rule]]
match = "*@bücher.test"
action = "forward"
to = "$1-books@dest.test"
[[plugin.config.rule]]
match = "josé@shop.test"
action = "forward"
to = "jose@dest.test"
[[plugin.config.rule]]
regex = '^(.+)-orders@shop\.test$'
action = "forward"
to = "$1@dest.test"
[[plugin.config.rule]]
match = "sales-*@shop.test"
action = "forward"
to = "sales@dest.test"
[[plugin.config.rule]]
match = "fwd-*@shop.test"
action = "forward"
to = "$1@dest.test"
`

func TestRouterDomainsAndPatterns(t *testing.T) {
	e := startEnv(t, envOptions{
		domains: `["ours.test", "shop.test", "bücher.test"]`,
		plugins: fmt.Sprintf("[[plugin]]\nname = \"router\"\npath = %q\nstages = [\"rcpt\"]\n%s", wasmbuild.ForTest(t, "./plugins/router"), multiDomainRules),
	})
	c := e.client(t)
	if err := c.Mail("alice@example.org", &smtp.MailOptions{UTF8: true}); err != nil {
		t.Fatal(err)
	}
	routed := map[string]string{
		"first.last@ours.test":     "fl@dest.test",        // ignore_dots
		"First.Last+x@OURS.test":   "fl@dest.test",        // and case, and a subaddress
		"info@shop.test":           "shop@dest.test",      // the rule's domain in capitals
		"info@bücher.test":         "books@dest.test",     // U-label sent, A-label in the rule
		"ana@xn--bcher-kva.test":   "ana-books@dest.test", // A-label sent, U-label in the rule
		"jose\u0301@shop.test":     "jose@dest.test",      // NFD sent, NFC in the rule
		"Bob-orders@shop.test":     "Bob@dest.test",       // a regular expression's capture
		"bob-orders+tag@shop.test": "bob@dest.test",       // on the subaddress base
		"sales-eu@shop.test":       "sales@dest.test",     // a wildcard
	}
	for rcpt := range routed {
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Errorf("RCPT %s: %v", rcpt, err)
		}
	}
	// A capture that makes no address defers the recipient: never a
	// forward to garbage, never a permanent refusal for our mistake.
	wantReply(t, "a bad substitution", c.Rcpt("fwd-@shop.test", nil), 451, smtp.EnhancedCode{4, 3, 5}, "routing rule 8 makes no valid destination")
	wantReply(t, "no rule", c.Rcpt("jose@shop.test", nil), 550, smtp.EnhancedCode{5, 1, 1}, "no such recipient")
	if _, err := sendData(t, c, testMessage); err != nil {
		t.Fatal(err)
	}
	got := e.dest.deliveries()
	if len(got) != 1 {
		t.Fatalf("destination got %d messages, want 1", len(got))
	}
	var want []string
	for _, dest := range routed {
		if !slices.Contains(want, dest) {
			want = append(want, dest)
		}
	}
	slices.Sort(want)
	to := slices.Clone(got[0].to)
	slices.Sort(to)
	if !slices.Equal(to, want) {
		t.Errorf("destination recipients %q, want %q", to, want)
	}
}
