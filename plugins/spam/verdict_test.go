package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// spammy is a message that earns SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3,
// MISSING_MID=2.5: 11.5 with an envelope that adds nothing.
var spammy = compose("x\n", `From: "security@bank.example" <a@mailer.example>`, "Subject: VERIFY YOUR ACCOUNT", "-Message-ID")

// What the plugin answers at each of its thresholds, and the fields it
// writes.
func TestVerdicts(t *testing.T) {
	cases := []struct {
		config string
		msg    string
		want   string
	}{
		{"", compose("x\n"), "continue; X-Spam-Score: 0; X-Spam-Flag: NO"},
		{"", spammy, "continue; X-Spam-Score: 11.5; X-Spam-Symbols: SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5; X-Spam-Flag: YES"},
		{"flag = 12", spammy, "continue; X-Spam-Score: 11.5; X-Spam-Symbols: SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5; X-Spam-Flag: NO"},
		{"headers = false", spammy, "continue"},
		{"quarantine = 10", spammy, "quarantine: spam score 11.5 (SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5); " +
			"Subject: [SPAM] VERIFY YOUR ACCOUNT; X-Spam-Score: 11.5; X-Spam-Symbols: SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5; X-Spam-Flag: YES"},
		{"quarantine = 10\nsubject_tag = \"\"", spammy, "quarantine: spam score 11.5 (SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5); " +
			"X-Spam-Score: 11.5; X-Spam-Symbols: SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5; X-Spam-Flag: YES"},
		{"quarantine = 5\nreject = 10", spammy, "reject 550 5.7.1 Message rejected as spam, score 11.5 (SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5)"},
		{"reject = 5", compose("x\n", `From: "security@bank.example" <a@mailer.example>`, "Subject: VERIFY YOUR ACCOUNT", "-Message-ID", "-Date"),
			"reject 550 5.7.1 Message rejected as spam, score 13 (SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5, ...)"},
		{"[scores]\nSPOOF_DISPLAY_NAME = 0\nMISSING_MID = 1.25", spammy, "continue; X-Spam-Score: 4.25; X-Spam-Symbols: SUBJ_ALL_CAPS=3, MISSING_MID=1.25; X-Spam-Flag: NO"},
	}
	for _, c := range cases {
		p := newPlugin(t, c.config)
		v := scan(t, p, "", c.msg)
		if got := describe(v); got != c.want {
			t.Errorf("config %q:\n got %s\nwant %s", c.config, got, c.want)
		}
	}
}

// Its thresholds and fields go by the total: the findings of the plugins
// before it in the chain and its own, each symbol once (its own score over
// an earlier plugin's). Its findings stay its own.
func TestVerdictsOnTheTotal(t *testing.T) {
	earlier := "found=dnsbl:DNSBL_LISTED=4 found=rspamd:BAYES_HAM=-1 found=other:MISSING_MID=1"
	cases := []struct {
		config, words, want string
	}{
		// 11.5 of its own is under 12; with 4 and -1 from before, 14.5 is not.
		{"quarantine = 12", "", "continue; X-Spam-Score: 11.5; X-Spam-Symbols: SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5; X-Spam-Flag: YES"},
		{"quarantine = 12", earlier, "quarantine: spam score 14.5 (SPOOF_DISPLAY_NAME=6, DNSBL_LISTED=4, SUBJ_ALL_CAPS=3, MISSING_MID=2.5, BAYES_HAM=-1); " +
			"Subject: [SPAM] VERIFY YOUR ACCOUNT; X-Spam-Score: 14.5; X-Spam-Symbols: SPOOF_DISPLAY_NAME=6, DNSBL_LISTED=4, SUBJ_ALL_CAPS=3, MISSING_MID=2.5, BAYES_HAM=-1; X-Spam-Flag: YES"},
		{"quarantine = 10\nreject = 14", earlier, "reject 550 5.7.1 Message rejected as spam, score 14.5 (SPOOF_DISPLAY_NAME=6, DNSBL_LISTED=4, SUBJ_ALL_CAPS=3, ...)"},
		// Negative findings before it can keep a message under the flag.
		{"", "found=rspamd:BAYES_HAM=-6", "continue; X-Spam-Score: 5.5; X-Spam-Symbols: SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5, BAYES_HAM=-6; X-Spam-Flag: NO"},
	}
	for _, c := range cases {
		p := newPlugin(t, c.config)
		v := scan(t, p, c.words, spammy)
		if got := describe(v); got != c.want {
			t.Errorf("config %q, %s:\n got %s\nwant %s", c.config, c.words, got, c.want)
		}
		if got := fmt.Sprint(symbols(v)); got != "[MISSING_MID SUBJ_ALL_CAPS SPOOF_DISPLAY_NAME]" {
			t.Errorf("config %q, %s: findings %s, want its own only", c.config, c.words, got)
		}
	}
}

// However many findings came before, its own count, and its fields name
// at most maxListed symbols.
func TestVerdictManyEarlierFindings(t *testing.T) {
	p := newPlugin(t, "quarantine = 200")
	req := request(t, "")
	for i := range abi.MaxRequestFindings {
		req.Findings = append(req.Findings, abi.PluginFinding{Plugin: "many", Symbol: fmt.Sprintf("S%03d", i), Score: 1})
	}
	p.SetMessage([]byte(spammy))
	v := p.Handle(t, req)
	want := fmt.Sprintf("quarantine: spam score %v (SPOOF_DISPLAY_NAME=6, SUBJ_ALL_CAPS=3, MISSING_MID=2.5, S000=1, ", abi.MaxRequestFindings+11.5)
	if got := describe(v); !strings.HasPrefix(got, want) || !strings.Contains(v.Text, ", S046=1, ...)") || strings.Contains(v.Text, "S047") {
		t.Errorf("got %s\nwant %s... with %d symbols named", got, want, maxListed)
	}
}

// Through sdktest's session, as the gateway runs it: the findings of the
// plugins before it reach its data stage.
func TestSessionWithEarlierFindings(t *testing.T) {
	p := newPlugin(t, "quarantine = 12", readmeDNS...)
	steps := p.Session(sdktest.Envelope{
		ClientIP: "192.0.2.25", ClientNameResult: "pass", ClientName: "mail.example.org", Helo: "mail.example.org",
		MailFrom: "a@mailer.example", Rcpts: []string{"info@example.test"}, Message: []byte(spammy),
		Findings: []abi.PluginFinding{{Plugin: "dnsbl", Symbol: "DNSBL_LISTED", Score: 4}},
	})
	if len(steps) != 1 || steps[0].Stage != abi.StageData || steps[0].Verdict.Action != abi.Quarantine ||
		!strings.HasPrefix(steps[0].Verdict.Text, "spam score 15.5 (SPOOF_DISPLAY_NAME=6, DNSBL_LISTED=4, ") {
		t.Errorf("steps %v, want data quarantined at 15.5", steps)
	}
}

// The fields a sender wrote under the plugin's names are removed, so that
// a filter on them can trust them; a quarantine replaces the Subject.
func TestVerdictRemovesFields(t *testing.T) {
	p := newPlugin(t, "quarantine = 10")
	v := scan(t, p, "", spammy)
	want := []string{"X-Spam-Score", "X-Spam-Symbols", "X-Spam-Flag", "Subject"}
	for _, name := range want {
		if !strings.Contains(strings.Join(v.RemoveHeaders, ","), name) {
			t.Errorf("removes %v, want %s among them", v.RemoveHeaders, name)
		}
	}
	// A tag is not added twice, and control characters do not pass.
	v = scan(t, p, "", strings.Replace(spammy, "Subject: VERIFY", "Subject: [SPAM] VERIFY", 1))
	if strings.Contains(describe(v), "Subject:") {
		t.Errorf("tagged again: %s", describe(v))
	}
}

// The findings are the symbols and weights, in the order found; the
// gateway adds them to other plugins' and applies [scoring].
func TestFindings(t *testing.T) {
	p := newPlugin(t, "")
	v := scan(t, p, "spf=fail fcrdns=none", spammy)
	got := fmt.Sprint(v.Findings)
	want := fmt.Sprint([]abi.Finding{{Symbol: spfFail, Score: 1}, {Symbol: rdnsNone, Score: 2},
		{Symbol: missingMID, Score: 2.5}, {Symbol: subjAllCaps, Score: 3}, {Symbol: spoofName, Score: 6}})
	if got != want {
		t.Errorf("findings %s, want %s", got, want)
	}
}

// A message the plugin cannot read is scored on the envelope, never
// refused for it.
func TestUnreadableMessage(t *testing.T) {
	p := newPlugin(t, "reject = 2", sdktest.Deny(abi.CapBody))
	v := scan(t, p, "spf=fail", spammy)
	if v.Action != abi.Continue || total(v) != 1 {
		t.Errorf("got %s, findings %v: want continue with R_SPF_FAIL only", describe(v), v.Findings)
	}
}

// Each setting that cannot work is refused, naming it.
func TestConfigRefused(t *testing.T) {
	cases := []struct{ config, key, text string }{
		{"[scores]\nNO_SUCH = 1", "scores.NO_SUCH", "scores: NO_SUCH is not a symbol of this plugin"},
		{"reject = 5\nquarantine = 5", "quarantine", "quarantine (5) must be below reject (5)"},
		{"flag = -1", "flag", "flag: must be a positive score"},
		{"subject_tag = \"a\\nb\"", "subject_tag", "must not contain control characters"},
		{"max_bytes = -1", "max_bytes", "max_bytes: must be positive"},
		{"freemail_domains = [\"not a domain\"]", "freemail_domains", `"not a domain" is not a domain name`},
		{"url_shorteners = [\"192.0.2.1\"]", "url_shorteners", "is not a domain name"},
		{"[[uribl]]\nzone = \"\"\nsymbol = \"X\"\nscore = 1", "uribl.0.zone", "is not a domain name"},
		{"[[uribl]]\nzone = \"a.test\"\nsymbol = \"lower\"\nscore = 1", "uribl.0.symbol", "must be capital letters"},
		{"[[uribl]]\nzone = \"a.test\"\nsymbol = \"PHISHING\"\nscore = 1", "uribl.0.symbol", "one of the plugin's own"},
		{"[[uribl]]\nzone = \"a.test\"\nsymbol = \"A\"\nscore = 0", "uribl.0.score", "score must be above 0"},
		{"[[uribl]]\nzone = \"a.test\"\nsymbol = \"A\"\nscore = 1\n[[uribl]]\nzone = \"A.test.\"\nsymbol = \"B\"\nscore = 1", "uribl.1.zone", "listed twice"},
		{"date_future = \"soon\"", "date_future", ""},
		{"typo = 1", "typo", "unknown setting typo"},
	}
	for _, c := range cases {
		_, err := sdktest.Configure(&plugin{}, c.config)
		var se *sdk.SettingError
		if !errors.As(err, &se) || se.Key != c.key || !strings.Contains(err.Error(), c.text) {
			t.Errorf("config %q: error %v, want one about %s saying %q", c.config, err, c.key, c.text)
		}
	}
}

// The plugin handles the data stage only, and declares what its settings
// need and no more.
func TestDeclares(t *testing.T) {
	for _, c := range []struct {
		config string
		want   abi.Permissions
	}{
		{"", abi.MayAddHeaders | abi.MayRemoveHeaders},
		{"headers = false", 0},
		{"headers = false\nquarantine = 6\nreject = 15", abi.MayAddHeaders | abi.MayRemoveHeaders | abi.MayQuarantine | abi.MayReject},
	} {
		p := newPlugin(t, c.config)
		if p.Stages() != abi.StageSetOf(abi.StageData) || p.Permissions() != c.want {
			t.Errorf("config %q: stages %v, permissions %b; want data and %b", c.config, p.Stages(), p.Permissions(), c.want)
		}
	}
}

// A URIBL zone lists a message's domains by their registrable domain; the
// answers a list gives when it refuses a query are no listing.
func TestURIBL(t *testing.T) {
	config := "[[uribl]]\nzone = \"uribl.test\"\nsymbol = \"URIBL_TEST\"\nscore = 5.5\n" +
		"[[uribl]]\nzone = \"dbl.test\"\nsymbol = \"DBL_TEST\"\nscore = 4\n"
	p := newPlugin(t, config,
		sdktest.Record(abi.TypeA, "spammy.example.uribl.test", "127.0.0.2"),
		sdktest.Record(abi.TypeA, "refused.example.uribl.test", "127.0.0.1"),
		sdktest.Record(abi.TypeA, "refused.example.dbl.test", "127.255.255.254"),
		sdktest.Record(abi.TypeA, "shop.co.uk.dbl.test", "127.0.1.2"))
	cases := []struct {
		body      string
		want, not []string
	}{
		{"Buy at https://www.spammy.example/deal\n", []string{"URIBL_TEST"}, []string{"DBL_TEST"}},
		{"See http://refused.example/\n", nil, []string{"URIBL_TEST", "DBL_TEST"}},
		{"See http://cheap.shop.co.uk/ and http://198.51.100.1/\n", []string{"DBL_TEST"}, []string{"URIBL_TEST"}},
		{"Nothing listed at https://clean.example/\n", nil, []string{"URIBL_TEST", "DBL_TEST"}},
	}
	for _, c := range cases {
		v := scan(t, p, "", compose(c.body))
		checkSymbols(t, c.body, symbols(v), c.want, c.not)
	}
	// A listing counts with its zone's score, and the X-Spam fields say so.
	v := scan(t, p, "", compose(cases[0].body))
	if total(v) != 5.5 || !strings.Contains(describe(v), "X-Spam-Symbols: URIBL_TEST=5.5") {
		t.Errorf("got %s", describe(v))
	}
}

// The lookups for URLs stop at max_uribl_lookups, and within the
// gateway's budget of a call: many domains never fail the call.
func TestURIBLBounded(t *testing.T) {
	var body strings.Builder
	for i := range 50 {
		fmt.Fprintf(&body, "http://d%d.example/\n", i)
	}
	body.WriteString("http://listed.example/\n")
	listed := sdktest.Record(abi.TypeA, "listed.example.uribl.test", "127.0.0.2")
	zone := "[[uribl]]\nzone = \"uribl.test\"\nsymbol = \"URIBL_TEST\"\nscore = 5\n"
	v := scan(t, newPlugin(t, zone, listed), "", compose(body.String()))
	checkSymbols(t, "past the lookups", symbols(v), nil, []string{"URIBL_TEST"})
	v = scan(t, newPlugin(t, "max_uribl_lookups = 100\n"+zone, listed), "", compose(body.String()))
	checkSymbols(t, "past the gateway's budget", symbols(v), nil, []string{"URIBL_TEST"})
}

// A hostile message cannot make the plugin slow: the parts, the URLs, the
// bytes scanned and the nesting are bounded, and a broken structure ends
// the walk without failing the call.
func TestHostileMessages(t *testing.T) {
	p := newPlugin(t, "max_bytes = 65536")
	var many strings.Builder
	many.WriteString("Content-Type: multipart/mixed; boundary=\"b\"\n\n")
	for range 5000 {
		many.WriteString("--b\nContent-Type: text/plain\n\nhttp://192.0.2.1/ https://bit.ly/x\n")
	}
	many.WriteString("--b--\n")
	deep := "x\n"
	for i := range 100 {
		deep = fmt.Sprintf("Content-Type: multipart/mixed; boundary=\"n%d\"\n\n--n%d\n%s--n%d--\n", i, i, deep, i)
	}
	cases := map[string]string{
		"5000 parts":                    compose(many.String()),
		"100 levels of nesting":         compose(deep),
		"a part without its end":        compose("Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/html\n\n<a href=\"http://x"),
		"no boundary":                   compose("Content-Type: multipart/mixed\n\nhello\n"),
		"broken base64":                 compose(mixed("application/zip", "attachment; filename=\"a.zip\"", "!!!!not base64\n")),
		"a megabyte of one line":        compose(strings.Repeat("http://a.example/", 1<<16)),
		"a megabyte of tags":            compose(htmlOnlyBody(strings.Repeat("<div style=\"display:none\">", 1<<15))),
		"a header block of 2000 fields": compose("x\n", strings.Repeat("X-Filler: "+strings.Repeat("y", 70)+"\n", 2000)+"Subject: fine"),
	}
	for name, msg := range cases {
		start := time.Now()
		scan(t, p, "", msg)
		t.Logf("%s (%d bytes): %v", name, len(msg), time.Since(start))
	}
	// What the bounds cut is not looked at: the part past max_parts, the
	// URL past max_urls.
	p = newPlugin(t, "max_parts = 2\nmax_urls = 1")
	v := scan(t, p, "", compose("Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nhi http://example.org/\n"+
		"--b\nContent-Type: text/plain\n\nhttp://192.0.2.1/\n--b--\n"))
	checkSymbols(t, "past max_parts", symbols(v), nil, []string{urlIP})
	v = scan(t, p, "", compose("http://example.org/ http://192.0.2.1/\n"))
	checkSymbols(t, "past max_urls", symbols(v), nil, []string{urlIP})
}
