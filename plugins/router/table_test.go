package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// configure runs the plugin's Configure on a config table as TOML text.
func configure(t testing.TB, raw string) (*plugin, *sdk.Config, error) {
	t.Helper()
	p := &plugin{}
	c := &sdk.Config{Name: "router", Hostname: "mx.test", Raw: []byte(raw)}
	return p, c, p.Configure(c)
}

// describe writes a verdict the way the README's tables do.
func describe(v sdk.Verdict) string {
	switch {
	case v.Destination != "":
		return "forward to " + strings.Join((*abi.Verdict)(&v).DestinationList(), ", ")
	case v.Action == abi.Reject || v.Action == abi.Tempfail:
		return fmt.Sprintf("%s %d %s %s", v.Action, v.Code, v.Enhanced, v.Text)
	}
	return v.Action.String()
}

const precedence = `
subaddress_separator = "+"
[[rule]]
match = "*@d.test"
action = "forward"
to = "catchall@inbox.test"
[[rule]]
match = "info@d.test"
action = "forward"
to = "info@inbox.test"
[[rule]]
match = "info+vip@d.test"
action = "forward"
to = "vip@inbox.test"
[[rule]]
match = "spam@d.test"
action = "drop"
`

func TestRoutePrecedence(t *testing.T) {
	p, c, err := configure(t, precedence)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"info@d.test":         "forward to info@inbox.test",     // exact
		"INFO@D.TEST":         "forward to info@inbox.test",     // case-insensitive
		"info+vip@d.test":     "forward to vip@inbox.test",      // exact beats subaddress base
		"info+other@d.test":   "forward to info@inbox.test",     // subaddress base beats catch-all
		"info+a+b@d.test":     "forward to info@inbox.test",     // first separator splits
		"+info@d.test":        "forward to catchall@inbox.test", // no base before the separator
		"nobody@d.test":       "forward to catchall@inbox.test", // catch-all
		"spam+x@d.test":       "discard",
		"info@sub.d.test":     "continue", // a catch-all is for its own domain only
		"info@other.test":     "continue",
		"not an address":      "continue",
		"":                    "continue",
		"info@d.test@evil.io": "continue",
	}
	for rcpt, want := range cases {
		v := p.Rcpt(&sdk.Request{Stage: abi.StageRcpt, Rcpt: rcpt})
		if got := describe(v); got != want {
			t.Errorf("route(%q) = %q, want %q", rcpt, got, want)
		}
		if !c.Permissions().Allows((*abi.Verdict)(&v)) {
			t.Errorf("route(%q) = %+v, outside the declared permissions %b", rcpt, v, c.Permissions())
		}
	}
}

func TestNoSeparatorMeansNoFallback(t *testing.T) {
	p, _, err := configure(t, "[[rule]]\nmatch = \"info@d.test\"\naction = \"drop\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(p.Rcpt(&sdk.Request{Rcpt: "info+x@d.test"})); got != "continue" {
		t.Errorf("info+x@d.test without a separator = %q, want continue", got)
	}
}

func TestRejectDefaults(t *testing.T) {
	p, c, err := configure(t, `
[[rule]]
match = "a@d.test"
action = "reject"
[[rule]]
match = "b@d.test"
action = "reject"
code = 450
`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describe(p.Rcpt(&sdk.Request{Rcpt: "a@d.test"})), "reject 550 5.1.1 Recipient address rejected"; got != want {
		t.Errorf("default reject = %q, want %q", got, want)
	}
	if got, want := describe(p.Rcpt(&sdk.Request{Rcpt: "b@d.test"})), "tempfail 450 4.1.1 Recipient address rejected"; got != want {
		t.Errorf("4xx reject = %q, want %q", got, want)
	}
	if want := abi.MayReject | abi.MayTempfail; c.Permissions() != want {
		t.Errorf("permissions = %b, want %b (reject and tempfail only)", c.Permissions(), want)
	}
}

func TestPermissionsFollowRules(t *testing.T) {
	_, c, err := configure(t, "[[rule]]\nmatch = \"a@d.test\"\naction = \"forward\"\nto = \"x@y.test\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Permissions() != abi.MaySetDestination {
		t.Errorf("forward-only table permits %b, want only MaySetDestination", c.Permissions())
	}
	_, c, err = configure(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Permissions() != 0 {
		t.Errorf("empty table permits %b, want nothing", c.Permissions())
	}
}

func TestConfigErrors(t *testing.T) {
	rule := func(body string) string { return "[[rule]]\nmatch = \"a@d.test\"\n" + body }
	// key is the setting the error names, for the gateway to point at.
	cases := []struct{ name, raw, want, key string }{
		{"unknown action", rule(`action = "bounce"`), `rule 1 (match "a@d.test"): action "bounce" is not forward, drop or reject`, "rule.0.action"},
		{"missing action", rule(``), `rule 1 (match "a@d.test"): action "" is not`, "rule.0.action"},
		{"forward without to", rule(`action = "forward"`), `rule 1 (match "a@d.test"): forward needs to`, "rule.0.action"},
		{"bad to", rule("action = \"forward\"\nto = \"me\""), `to "me" is not an address`, "rule.0.to"},
		{"wildcard to", rule("action = \"forward\"\nto = \"*@x.test\""), `to "*@x.test" is not an address`, "rule.0.to"},
		{"to on drop", rule("action = \"drop\"\nto = \"me@x.test\""), `to is only for action = "forward"`, "rule.0.to"},
		{"code on forward", rule("action = \"forward\"\nto = \"me@x.test\"\ncode = 550"), `only for action = "reject"`, "rule.0.code"},
		{"duplicate", rule("action = \"drop\"") + "\n" + "[[rule]]\nmatch = \"A@D.test\"\naction = \"drop\"\n", `rule 2 (match "A@D.test"): a@d.test is matched by an earlier rule too`, "rule.1.match"},
		{"duplicate catch-all", "[[rule]]\nmatch = \"*@d.test\"\naction = \"drop\"\n[[rule]]\nmatch = \"*@d.test\"\naction = \"drop\"\n", `rule 2 (match "*@d.test"): *@d.test is matched`, "rule.1.match"},
		{"code 250", rule("action = \"reject\"\ncode = 250"), `rule 1 (match "a@d.test"): reply code 250 is not 4xx or 5xx`, "rule.0.code"},
		{"code 1000", rule("action = \"reject\"\ncode = 1000"), `code 1000 is not 4xx or 5xx`, "rule.0.code"},
		{"class mismatch", rule("action = \"reject\"\ncode = 550\nenhanced = \"4.1.1\""), `enhanced code 4.1.1 does not match reply code 550`, "rule.0.enhanced"},
		{"bad enhanced", rule("action = \"reject\"\nenhanced = \"5.1\""), `enhanced code "5.1" is not class.subject.detail`, "rule.0.enhanced"},
		{"bad match", "[[rule]]\nmatch = \"nobody\"\naction = \"drop\"\n", `rule 1 (match "nobody"): match must be an address`, "rule.0.match"},
		{"wildcard domain", "[[rule]]\nmatch = \"a@*.test\"\naction = \"drop\"\n", `rule 1 (match "a@*.test"): "*.test" is not a domain`, "rule.0.match"},
		{"match and regex", rule("action = \"drop\"\nregex = 'a@d\\.test'"), `needs match = "address" or regex = '...', and only one of them`, "rule.0.match"},
		{"neither match nor regex", "[[rule]]\naction = \"drop\"\n", `rule 1 (match ""): a rule needs match`, "rule.0.match"},
		{"bad regex", "[[rule]]\nregex = 'a(@d.test'\naction = \"drop\"\n", `rule 1: regex "a(@d.test": missing closing )`, "rule.0.regex"},
		{"regex without @", "[[rule]]\nregex = '.*'\naction = \"drop\"\n", `rule 1: regex ".*": needs a literal @ between the local part and the domain`, "rule.0.regex"},
		{"unknown capture", "[[rule]]\nregex = '(.+)@d\\.test'\naction = \"forward\"\nto = \"$2@x.test\"\n", `to "$2@x.test": $2 is not a capture of the pattern, which has 1`, "rule.0.to"},
		{"capture 0", "[[rule]]\nmatch = \"a-*@d.test\"\naction = \"forward\"\nto = \"$0@x.test\"\n", `$0 is not a capture of the pattern, which has 1`, "rule.0.to"},
		{"capture name run-on", "[[rule]]\nregex = '(.+)@d\\.test'\naction = \"forward\"\nto = \"$1_x@x.test\"\n", `$1_x is not a capture of the pattern (a number from 1 to 1, or a (?P<name>...) of the expression; write ${1}x`, "rule.0.to"},
		{"lone dollar", "[[rule]]\nmatch = \"a-*@d.test\"\naction = \"forward\"\nto = \"$@x.test\"\n", `a $ that names no capture (write $$ for a dollar sign)`, "rule.0.to"},
		{"template not an address", "[[rule]]\nmatch = \"a-*@d.test\"\naction = \"forward\"\nto = \"$1 at x.test\"\n", `to "$1 at x.test" is not an address`, "rule.0.to"},
		{"template bad domain", "[[rule]]\nmatch = \"a-*@d.test\"\naction = \"forward\"\nto = \"$1@x..test\"\n", `to "$1@x..test" is not an address, whatever the captures are`, "rule.0.to"},
		{"empty to list", rule("action = \"forward\"\nto = []"), `forward needs to = "address" (or a list of them)`, "rule.0.to"},
		{"bad to in a list", rule("action = \"forward\"\nto = [\"a@x.test\", \"me\"]"), `to "me" is not an address`, "rule.0.to"},
		{"to list twice", rule("action = \"forward\"\nto = [\"a@x.test\", \"A@X.test\"]"), `to lists "A@X.test" twice`, "rule.0.to"},
		{"to list too long", rule("action = \"forward\"\nto = [" + strings.Repeat(`"a@x.test", `, 20) + `"b@x.test"]`), `to lists 21 addresses; at most 20`, "rule.0.to"},
		{"to not a string", rule("action = \"forward\"\nto = 5"), `expected an address or a list of addresses`, "rule.0.to"},
		{"to list of numbers", rule("action = \"forward\"\nto = [\"a@x.test\", 5]"), `expected an address or a list of addresses`, "rule.0.to"},
		{"template in a list", "[[rule]]\nmatch = \"a-*@d.test\"\naction = \"forward\"\nto = [\"x@y.test\", \"$2@x.test\"]\n", `to "$2@x.test": $2 is not a capture of the pattern, which has 1`, "rule.0.to"},
		{"dots not a bool", "[[domain]]\nname = \"d.test\"\nignore_dots = \"yes\"\n", `domain[0].ignore_dots: expected true or false`, "domain.0.ignore_dots"},
		{"bad domain name", "[[domain]]\nname = \"d test\"\n", `domain 1 (name "d test"): name "d test" is not a domain`, "domain.0.name"},
		{"duplicate domain", "[[domain]]\nname = \"d.test\"\n[[domain]]\nname = \"D.TEST\"\n", `domain 2 (name "D.TEST"): d.test has settings in an earlier [[domain]] too`, "domain.1.name"},
		{"bad domain separator", "[[domain]]\nname = \"d.test\"\nsubaddress_separator = \" \"\n", `subaddress_separator " ": must not contain`, "domain.0.subaddress_separator"},
		{"unknown key", rule("action = \"drop\"\ncolour = \"red\""), `unknown setting rule.colour`, "rule.colour"},
		{"unknown top key", "subaddress = \"+\"", `unknown setting subaddress`, "subaddress"},
		{"bad separator", "subaddress_separator = \"@\"", `subaddress_separator "@"`, "subaddress_separator"},
		{"not toml", "rule = [", ``, ""},
	}
	for _, c := range cases {
		_, _, err := configure(t, c.raw)
		if err == nil {
			t.Errorf("%s: configured cleanly, want an error containing %q", c.name, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.want)
		}
		var se *sdk.SettingError
		if c.key != "" && (!errors.As(err, &se) || se.Key != c.key) {
			t.Errorf("%s: error %q names setting %v, want %q", c.name, err, se, c.key)
		}
	}
}

// A rule that forwards to a domain the gateway serves would send the mail
// back to the gateway: the router refuses to load, naming the rule's to, as
// the gateway told it its domains when configuring it.
func TestForwardToOurDomainIsALoop(t *testing.T) {
	config := `
[[rule]]
match = "a@ours.test"
action = "forward"
to = "me@inbox.test"
[[rule]]
match = "b@ours.test"
action = "forward"
to = "a@OURS.test"
`
	_, err := sdktest.Configure(&plugin{}, config, sdktest.Domains("other.test", "ours.test"))
	want := `config refused: rule 2 (match "b@ours.test"): to "a@OURS.test" is at ours.test, a domain this gateway serves: mail forwarded there would come back here (a routing loop)`
	var se *sdk.SettingError
	if err == nil || err.Error() != want || !errors.As(err, &se) || se.Key != "rule.1.to" {
		t.Errorf("Configure = %v (setting %v), want %q at rule.1.to", err, se, want)
	}
	// A host that does not say its domains (older than the field) loads it.
	if _, err := sdktest.Configure(&plugin{}, config); err != nil {
		t.Errorf("without domains: %v", err)
	}
}

func BenchmarkRoute(b *testing.B) {
	p, _, err := configure(b, precedence)
	if err != nil {
		b.Fatal(err)
	}
	req := &sdk.Request{Stage: abi.StageRcpt, Rcpt: "Info+News@D.test"}
	for b.Loop() {
		p.Rcpt(req)
	}
}

// largeTable is a config of n exact rules (user0@big.test ...) and m
// patterns, half wildcards (team0-*@big.test ...) and half regular
// expressions (^(.+)-dept0@big\.test$ ...), and a catch-all.
func largeTable(n, m int) string {
	var b strings.Builder
	b.WriteString("subaddress_separator = \"+\"\n")
	for i := range n {
		fmt.Fprintf(&b, "[[rule]]\nmatch = \"user%d@big.test\"\naction = \"forward\"\nto = \"user%d@inbox.test\"\n", i, i)
	}
	for i := range m {
		if i%2 == 0 {
			fmt.Fprintf(&b, "[[rule]]\nmatch = \"team%d-*@big.test\"\naction = \"forward\"\nto = \"$1@team%d.test\"\n", i, i)
		} else {
			fmt.Fprintf(&b, "[[rule]]\nregex = '^(.+)-dept%d@big\\.test$'\naction = \"forward\"\nto = \"$1@dept%d.test\"\n", i, i)
		}
	}
	b.WriteString("[[rule]]\nmatch = \"*@big.test\"\naction = \"forward\"\nto = \"all@inbox.test\"\n")
	return b.String()
}

// BenchmarkRouteLarge is the cost of one recipient with 10,000 exact
// rules and 100 patterns: an exact address, its subaddress, the last
// pattern, and one that no pattern matches (the catch-all's, after all
// 100).
func BenchmarkRouteLarge(b *testing.B) {
	p := &plugin{}
	c := &sdk.Config{Name: "router", Raw: []byte(largeTable(10000, 100)), Domains: []string{"big.test"}}
	if err := p.Configure(c); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, rcpt, want string }{
		{"exact", "User9999@big.test", "forward to user9999@inbox.test"},
		{"subaddress", "user9999+news@big.test", "forward to user9999@inbox.test"},
		{"first-pattern", "Team0-x@big.test", "forward to x@team0.test"},
		{"last-pattern", "ana-dept99@big.test", "forward to ana@dept99.test"},
		{"catch-all", "nobody@big.test", "forward to all@inbox.test"},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := &sdk.Request{Stage: abi.StageRcpt, Rcpt: c.rcpt}
			if got := describe(p.Rcpt(req)); got != c.want {
				b.Fatalf("%s: %s, want %s", c.rcpt, got, c.want)
			}
			for b.Loop() {
				p.Rcpt(req)
			}
		})
	}
}

// BenchmarkConfigureLarge is loading that table: what a start or a
// reload costs per instance.
func BenchmarkConfigureLarge(b *testing.B) {
	config := largeTable(10000, 100)
	for b.Loop() {
		if _, err := sdktest.Configure(&plugin{}, config, sdktest.Domains("big.test")); err != nil {
			b.Fatal(err)
		}
	}
}

// routes checks where each recipient goes, and that every verdict is one
// the plugin declared.
func routes(t *testing.T, p *sdktest.Plugin, utf8 bool, cases map[string]string) {
	t.Helper()
	for rcpt, want := range cases {
		v, err := p.Try(&sdk.Request{Stage: abi.StageRcpt, Rcpt: rcpt, UTF8: utf8})
		if err != nil {
			t.Errorf("route(%q): %v", rcpt, err)
			continue
		}
		if got := describe(v); got != want {
			t.Errorf("route(%q) = %q, want %q", rcpt, got, want)
		}
	}
}

// Several domains, each with its own rules and catch-all; domains in any
// case, and internationalised ones in either form on either side.
func TestSeveralDomains(t *testing.T) {
	p := sdktest.New(t, &plugin{}, `
[[rule]]
match = "ana@Shop.test"
action = "forward"
to = "ana@inbox.test"
[[rule]]
match = "*@shop.test"
action = "forward"
to = "shop@inbox.test"
[[rule]]
match = "ana@blog.test"
action = "forward"
to = "ana-blog@inbox.test"
[[rule]]
match = "*@BLOG.test"
action = "drop"
[[rule]]
match = "info@bücher.test"
action = "forward"
to = "books@inbox.test"
[[rule]]
match = "*@xn--caf-dma.test"
action = "forward"
to = "cafe@inbox.test"
`, sdktest.Domains("shop.test", "blog.test", "xn--bcher-kva.test", "xn--caf-dma.test"))
	routes(t, p, true, map[string]string{
		"ana@shop.test":               "forward to ana@inbox.test",
		"ANA@SHOP.TEST":               "forward to ana@inbox.test",
		"bob@Shop.Test":               "forward to shop@inbox.test",
		"ana@blog.test":               "forward to ana-blog@inbox.test",
		"bob@blog.test":               "discard",
		"info@bücher.test":            "forward to books@inbox.test",
		"info@BÜCHER.test":            "forward to books@inbox.test", // IDNA maps case
		"info@xn--bcher-kva.test":     "forward to books@inbox.test",
		"INFO@XN--BCHER-KVA.TEST":     "forward to books@inbox.test",
		"other@bücher.test":           "continue",
		"x@café.test":                 "forward to cafe@inbox.test",
		"x@xn--caf-dma.test":          "forward to cafe@inbox.test",
		"ana@other.test":              "continue",
		"ana@shop.test.other.test":    "continue",
		"info@xn--bcher-kva.test.net": "continue",
	})
}

// ignore_dots makes first.last and firstlast one address, at the domains
// that set it and nowhere else; a domain may have its own separator.
func TestIgnoreDots(t *testing.T) {
	p := sdktest.New(t, &plugin{}, `
subaddress_separator = "+"
[[domain]]
name = "dots.test"
ignore_dots = true
[[domain]]
name = "dash.test"
subaddress_separator = "-"
[[rule]]
match = "first.last@dots.test"
action = "forward"
to = "fl@inbox.test"
[[rule]]
match = "first.last@plain.test"
action = "forward"
to = "plain@inbox.test"
[[rule]]
match = "first@dash.test"
action = "forward"
to = "dash@inbox.test"
`)
	routes(t, p, false, map[string]string{
		"first.last@dots.test":     "forward to fl@inbox.test",
		"firstlast@dots.test":      "forward to fl@inbox.test",
		"F.i.r.s.t.Last@dots.test": "forward to fl@inbox.test",
		"first.last+x@dots.test":   "forward to fl@inbox.test",
		"firstlast+x.y@dots.test":  "forward to fl@inbox.test",
		"first.last@plain.test":    "forward to plain@inbox.test",
		"firstlast@plain.test":     "continue", // off by default
		"first-x@dash.test":        "forward to dash@inbox.test",
		"first+x@dash.test":        "continue", // the domain's separator replaces the top-level one
	})
	// Two spellings of one address are one rule.
	_, err := sdktest.Configure(&plugin{}, `
[[domain]]
name = "dots.test"
ignore_dots = true
[[rule]]
match = "first.last@dots.test"
action = "drop"
[[rule]]
match = "firstlast@dots.test"
action = "drop"
`)
	if err == nil || !strings.Contains(err.Error(), "rule 2 (match \"firstlast@dots.test\"): firstlast@dots.test is matched by an earlier rule too") {
		t.Errorf("first.last and firstlast with ignore_dots: %v, want a duplicate", err)
	}
}

const patterns = `
subaddress_separator = "+"
[[rule]]
regex = '^(.+)-orders@shop\.test$'
action = "forward"
to = "$1@orders.test"
[[rule]]
match = "sales-*@shop.test"
action = "forward"
to = "sales@inbox.test"
[[rule]]
match = "sales-eu@shop.test"
action = "forward"
to = "eu@inbox.test"
[[rule]]
match = "sales-*-*@shop.test"
action = "forward"
to = "never@inbox.test"
[[rule]]
match = "team-*-*@shop.test"
action = "forward"
to = "$2.$1@teams.test"
[[rule]]
regex = '^(?P<user>[a-z]+)\.(?P<dept>[a-z]+)@(shop|store)\.test$'
action = "forward"
to = "${user}@${dept}.test"
[[rule]]
match = "noreply-*@shop.test"
action = "reject"
text = "Nobody reads this"
[[rule]]
match = "*@shop.test"
action = "forward"
to = "$1@catchall.test"
[[rule]]
regex = '(.+)@store\.test'
action = "forward"
to = "${1}_store@inbox.test"
`

// Pattern rules come after exact ones and before the catch-all, in file
// order; captures go into the destination.
func TestPatterns(t *testing.T) {
	p := sdktest.New(t, &plugin{}, patterns, sdktest.Domains("shop.test", "store.test"))
	routes(t, p, false, map[string]string{
		"bob-orders@shop.test":    "forward to bob@orders.test",
		"Bob-Orders@Shop.test":    "forward to Bob@orders.test", // the client's case is kept
		"bob-orders+x@shop.test":  "forward to bob@orders.test", // the subaddress base, after the whole address
		"a-b-orders@shop.test":    "forward to a-b@orders.test",
		"sales-eu@shop.test":      "forward to eu@inbox.test", // exact first
		"sales-us@shop.test":      "forward to sales@inbox.test",
		"SALES-x-y@shop.test":     "forward to sales@inbox.test", // the first pattern in file order
		"sales-@shop.test":        "forward to sales@inbox.test", // * matches nothing too
		"team-a-b-c@shop.test":    "forward to b-c.a@teams.test", // the first * takes as little as it can
		"ana.dev@shop.test":       "forward to ana@dev.test",
		"ana.dev@store.test":      "forward to ana@dev.test",
		"noreply-x@shop.test":     "reject 550 5.1.1 Nobody reads this",
		"someone@shop.test":       "forward to someone@catchall.test", // the catch-all captures the local part
		"someone+tag@shop.test":   "forward to someone+tag@catchall.test",
		"x@store.test":            "forward to x_store@inbox.test",
		"bob-orders@store.test":   "forward to bob-orders_store@inbox.test",
		"bob-orders@shop.test.ok": "continue",
	})
	if want := abi.MaySetDestination | abi.MayReject | abi.MayTempfail; p.Permissions() != want {
		t.Errorf("permissions = %b, want %b", p.Permissions(), want)
	}
}

// A forward rule's to may be a list: each recipient it matches goes to
// every address of it, in order, templates made with the captures.
func TestSeveralDestinations(t *testing.T) {
	p := sdktest.New(t, &plugin{}, `
[[rule]]
match = "team@d.test"
action = "forward"
to = ["ana@inbox.test", "bob@elsewhere.test"]
[[rule]]
match = "one@d.test"
action = "forward"
to = ["one@inbox.test"]
[[rule]]
match = "dept-*@d.test"
action = "forward"
to = ["$1@inbox.test", "archive@inbox.test", "${1}@backup.test"]
[[rule]]
regex = '^(?P<user>[a-z]+)\.(?P<copy>[a-z]+)@d\.test$'
action = "forward"
to = ["${user}@inbox.test", "${copy}@inbox.test"]
`, sdktest.Domains("d.test"))
	routes(t, p, false, map[string]string{
		"team@d.test":       "forward to ana@inbox.test, bob@elsewhere.test",
		"one@d.test":        "forward to one@inbox.test",
		"dept-sales@d.test": "forward to sales@inbox.test, archive@inbox.test, sales@backup.test",
		"ana.bob@d.test":    "forward to ana@inbox.test, bob@inbox.test",
		// Two templates that make one address: one copy.
		"ana.ana@d.test": "forward to ana@inbox.test",
	})
	v, err := p.Try(&sdk.Request{Stage: abi.StageRcpt, Rcpt: "team@d.test"})
	if err != nil || v.Destination != "ana@inbox.test" || len(v.Destinations) != 1 || v.Destinations[0] != "bob@elsewhere.test" {
		t.Errorf("team@d.test: %+v, %v; want the first as Destination (what an older host reads), the rest in Destinations", v, err)
	}
	if want := abi.MaySetDestination | abi.MayTempfail; p.Permissions() != want {
		t.Errorf("permissions = %b, want %b", p.Permissions(), want)
	}
}

// A destination in a list that is at one of the gateway's domains is a
// loop, refused at load as for a single to.
func TestSeveralDestinationsLoop(t *testing.T) {
	c := &sdk.Config{Name: "router", Raw: []byte("[[rule]]\nmatch = \"a@d.test\"\naction = \"forward\"\nto = [\"me@x.test\", \"me@ours.test\"]\n"), Domains: []string{"d.test", "ours.test"}}
	err := (&plugin{}).Configure(c)
	var se *sdk.SettingError
	if err == nil || !strings.Contains(err.Error(), `to "me@ours.test" is at ours.test, a domain this gateway serves`) || !errors.As(err, &se) || se.Key != "rule.0.to" {
		t.Errorf("error %v, want the loop named at rule.0.to", err)
	}
}

// A destination that its captures make no address of is a temporary
// failure for that recipient, never a forward to garbage. (An expression
// whose group can be empty where the destination cannot is refused at
// load: TestEmptyCaptureLoadErrors.)
func TestBadSubstitutionIsATempfail(t *testing.T) {
	p := sdktest.New(t, &plugin{}, `
[[rule]]
regex = '^fwd-(.+)@d\.test$'
action = "forward"
to = "$1@inbox.test"

[[rule]]
match = "glob-*@d.test"
action = "forward"
to = "$1@inbox.test"
`)
	routes(t, p, true, map[string]string{
		"fwd-ok@d.test":   "forward to ok@inbox.test",
		"glob-@d.test":    "tempfail 451 4.3.5 <glob-@d.test>: routing rule 2 makes no valid destination for it, try again later",
		"fwd-a..b@d.test": "tempfail 451 4.3.5 <fwd-a..b@d.test>: routing rule 1 makes no valid destination for it, try again later",
		"fwd-a(b)@d.test": "tempfail 451 4.3.5 <fwd-a(b)@d.test>: routing rule 1 makes no valid destination for it, try again later",
		"fwd-" + strings.Repeat("a", 65) + "@d.test": "tempfail 451 4.3.5 <fwd-" + strings.Repeat("a", 65) + "@d.test>: routing rule 1 makes no valid destination for it, try again later",
	})
}

// A pattern that can never match, because the gateway does not serve its
// domain, is refused at its line, as are loops made by a template.
func TestPatternLoadErrors(t *testing.T) {
	ours := sdktest.Domains("shop.test", "xn--bcher-kva.test")
	cases := []struct{ name, raw, want, key string }{
		{"wildcard elsewhere", "[[rule]]\nmatch = \"sales-*@other.test\"\naction = \"drop\"\n",
			`rule 1 (match "sales-*@other.test"): sales-*@other.test can never match: other.test is not one of this gateway's domains (shop.test, xn--bcher-kva.test)`, "rule.0.match"},
		{"regex elsewhere", "[[rule]]\nregex = '^(.+)-orders@shop\\.example$'\naction = \"drop\"\n",
			`rule 1: regex "^(.+)-orders@shop\\.example$" can never match: its domain is none of this gateway's domains (shop.test, xn--bcher-kva.test)`, "rule.0.regex"},
		{"regex with an unescaped dot elsewhere", "[[rule]]\nregex = '.+@shop.test.net'\naction = \"drop\"\n", `can never match`, "rule.0.regex"},
		{"domain setting elsewhere", "[[domain]]\nname = \"other.test\"\nignore_dots = true\n",
			`domain 1 (name "other.test"): other.test is not one of this gateway's domains (shop.test, xn--bcher-kva.test): its settings would never apply`, "domain.0.name"},
		{"template loop", "[[rule]]\nmatch = \"a-*@shop.test\"\naction = \"forward\"\nto = \"$1@Shop.test\"\n",
			`to "$1@Shop.test" is at shop.test, a domain this gateway serves`, "rule.0.to"},
		{"template loop by U-label", "[[rule]]\nmatch = \"a-*@shop.test\"\naction = \"forward\"\nto = \"$1@bücher.test\"\n",
			`to "$1@bücher.test" is at xn--bcher-kva.test, a domain this gateway serves`, "rule.0.to"},
	}
	for _, c := range cases {
		_, err := sdktest.Configure(&plugin{}, c.raw, ours)
		var se *sdk.SettingError
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &se) || se.Key != c.key {
			t.Errorf("%s: %v (setting %v), want %q at %s", c.name, err, se, c.want, c.key)
		}
	}
	// Patterns at our domains, in either form, load.
	for _, ok := range []string{
		"[[rule]]\nregex = '(.+)@B(ü|ue)cher\\.test'\naction = \"drop\"\n",
		"[[rule]]\nregex = '(.+)@xn--bcher-kva\\.test'\naction = \"drop\"\n",
		"[[rule]]\nregex = '^(a@shop\\.test|b@other\\.test)$'\naction = \"drop\"\n",
		"[[rule]]\nregex = '^(.+@shop\\.test)$'\naction = \"drop\"\n",
		"[[rule]]\nregex = '.+@.+'\naction = \"drop\"\n",
		"[[rule]]\nmatch = \"x-*@BÜCHER.test\"\naction = \"drop\"\n",
	} {
		if _, err := sdktest.Configure(&plugin{}, ok, ours); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// A destination that is no address when a group of the expression is
// empty is refused at the rule, if the expression lets the group be empty:
// the recipients that leave it empty would be deferred until they bounce.
func TestEmptyCaptureLoadErrors(t *testing.T) {
	ours := sdktest.Domains("shop.test")
	rule := func(regex, to string) string {
		return "[[rule]]\nregex = '" + regex + "'\naction = \"forward\"\nto = \"" + to + "\"\n"
	}
	cases := []struct{ name, raw, want string }{
		{"a group of .*", rule(`^(.*)-x@shop\.test$`, "$1@inbox.test"),
			`rule 1: to "$1@inbox.test" is not an address when $1 is empty ("@inbox.test" is not local@domain), which regex "^(.*)-x@shop\\.test$" allows: make its group match at least one character (.+ rather than .*`},
		{"a named group", rule(`^(?P<user>[a-z]*)\.x@shop\.test$`, "${user}@inbox.test"), `when ${user} is empty`},
		{"a group at most 3 long", rule(`^(a{0,3})b@shop\.test$`, "$1@inbox.test"), `when $1 is empty`},
		{"an optional group", rule(`^(.+)?-x@shop\.test$`, "$1@inbox.test"), `when $1 is empty`},
		{"a group in one branch", rule(`^(?:(.+)-a|b)@shop\.test$`, "$1@inbox.test"), `when $1 is empty`},
		{"a group of a group that can be empty", rule(`^((?:ab)*|c)-x@shop\.test$`, "$1@inbox.test"), `when $1 is empty`},
		{"an empty domain label", rule(`^x-(.*)@shop\.test$`, "x@$1.inbox.test"), `when $1 is empty`},
		{"the second group", rule(`^(.+)-(.*)@shop\.test$`, "$1.$2@inbox.test"), `when $2 is empty`},
	}
	for _, c := range cases {
		_, err := sdktest.Configure(&plugin{}, c.raw, ours)
		var se *sdk.SettingError
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &se) || se.Key != "rule.0.regex" {
			t.Errorf("%s: %v (setting %v), want %q at rule.0.regex", c.name, err, se, c.want)
		}
	}
	for _, ok := range []string{
		rule(`^(.+)-x@shop\.test$`, "$1@inbox.test"),
		rule(`^(.*)-x@shop\.test$`, "fwd$1@inbox.test"),           // empty, it still makes an address
		rule(`^(.*)-(.+)@shop\.test$`, "$2@inbox.test"),           // the group that can be empty is not used
		rule(`^(x+|y+)-z@shop\.test$`, "$1@inbox.test"),           // an alternative inside the group
		rule(`^(?:a-(.+)|b-(.+))@shop\.test$`, "$1$2@inbox.test"), // one of the two is empty, never both: each alone is tried
		"[[rule]]\nregex = '^(.*)-x@shop\\.test$'\naction = \"drop\"\n",
	} {
		if _, err := sdktest.Configure(&plugin{}, ok, ours); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// Internationalised local parts match exactly, after NFC: a client may
// send é as e and a combining accent.
func TestInternationalLocalParts(t *testing.T) {
	p := sdktest.New(t, &plugin{}, `
[[rule]]
match = "josé@d.test"
action = "forward"
to = "jose@inbox.test"
[[rule]]
match = "ΑΡΗΣ@d.test"
action = "forward"
to = "aris@inbox.test"
[[rule]]
match = "*-café@d.test"
action = "forward"
to = "$1-cafe@inbox.test"
`)
	routes(t, p, true, map[string]string{
		"josé@d.test":           "forward to jose@inbox.test", // NFC
		"jose\u0301@d.test":     "forward to jose@inbox.test", // NFD
		"JOSé@d.test":           "forward to jose@inbox.test", // ASCII letters ignore case
		"JOSÉ@d.test":           "continue",                   // other letters do not
		"jose@d.test":           "continue",
		"ΑΡΗΣ@d.test":           "forward to aris@inbox.test",
		"άρης@d.test":           "continue",
		"Ana-cafe\u0301@d.test": "forward to Ana-cafe@inbox.test",
	})
	// Without SMTPUTF8 the gateway refuses such a recipient; the router
	// does not route it either.
	routes(t, p, false, map[string]string{"josé@d.test": "continue", "JOSE@d.test": "continue"})
}

// An expression may name an internationalised domain in either form.
func TestRegexDomainInEitherForm(t *testing.T) {
	p := sdktest.New(t, &plugin{}, `
[[rule]]
regex = '^(.+)@bücher\.test$'
action = "forward"
to = "$1-u@inbox.test"
[[rule]]
regex = '^(.+)@xn--caf-dma\.test$'
action = "forward"
to = "$1-a@inbox.test"
`, sdktest.Domains("xn--bcher-kva.test", "xn--caf-dma.test"))
	routes(t, p, true, map[string]string{
		"x@bücher.test":         "forward to x-u@inbox.test",
		"x@xn--bcher-kva.test":  "forward to x-u@inbox.test",
		"x@café.test":           "forward to x-a@inbox.test",
		"x@XN--CAF-DMA.test":    "forward to x-a@inbox.test",
		"x@xn--bcher-kva.test2": "continue",
	})
}
