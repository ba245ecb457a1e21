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
		return "forward to " + v.Destination
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
		{"partial wildcard", "[[rule]]\nmatch = \"a*@d.test\"\naction = \"drop\"\n", `only a whole local part can be a wildcard`, "rule.0.match"},
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
