package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// testNow is the clock of the tests: Date fields are written around it.
var testNow = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)

// newPlugin configures the plugin natively, its clock at testNow.
func newPlugin(t testing.TB, config string, opts ...sdktest.Option) *sdktest.Plugin {
	t.Helper()
	return sdktest.New(t, &plugin{now: func() time.Time { return testNow }}, config, opts...)
}

// request builds the data-stage request that words of key=value describe:
// ip, fcrdns (pass, fail, none, temperror), helo, mailfrom, spf, dkim (a
// signature's result; repeatable), dmarc, p (the DMARC policy),
// policydomain (where the DMARC record was found), arc, and found (a
// finding of a plugin before this one, PLUGIN:SYMBOL=score; repeatable).
// dmarc=pass and dmarc=fail found the record at example.org; the others,
// as the gateway gives them, found none (a permerror is then about the
// From field).
func request(t testing.TB, words string) *sdk.Request {
	t.Helper()
	req := &sdk.Request{Stage: abi.StageData, SessionID: "test", ClientIP: "192.0.2.25", Rcpts: []string{"info@example.test"}}
	for word := range strings.FieldsSeq(words) {
		key, value, ok := strings.Cut(word, "=")
		if !ok {
			t.Fatalf("%q is not key=value", word)
		}
		switch key {
		case "ip":
			req.ClientIP = value
		case "fcrdns":
			req.ClientNameResult = value
			if value == "pass" {
				req.ClientName = "mail.example.org"
			}
		case "helo":
			req.Helo = value
		case "mailfrom":
			req.MailFrom = value
		case "spf":
			req.Auth.SPF = abi.SPF{Result: value, Domain: "example.org"}
		case "dkim":
			req.Auth.DKIM = append(req.Auth.DKIM, abi.DKIM{Result: value, Domain: "example.org", Selector: "s1"})
		case "dmarc":
			req.Auth.DMARC.Result, req.Auth.DMARC.FromDomain, req.Auth.DMARC.Pct = value, "example.org", 100
			if value == "pass" || value == "fail" {
				req.Auth.DMARC.PolicyDomain = "example.org"
			}
		case "policydomain":
			req.Auth.DMARC.PolicyDomain = value
		case "p":
			req.Auth.DMARC.Policy = value
		case "arc":
			req.Auth.ARC = abi.ARC{Result: value, Instances: 1, Sealers: []string{"lists.example.net"}}
		case "found":
			plugin, finding, _ := strings.Cut(value, ":")
			symbol, score, _ := strings.Cut(finding, "=")
			f, err := strconv.ParseFloat(score, 64)
			if plugin == "" || symbol == "" || err != nil {
				t.Fatalf("found=%s is not PLUGIN:SYMBOL=score", value)
			}
			req.Findings = append(req.Findings, abi.PluginFinding{Plugin: plugin, Symbol: symbol, Score: f})
		default:
			t.Fatalf("unknown key %q in %q", key, words)
		}
	}
	return req
}

// goodHeader is the header of a plain, well-formed message.
const goodHeader = "From: Alice Example <alice@example.org>\n" +
	"To: info@example.test\n" +
	"Subject: Lunch on Friday\n" +
	"Date: Fri, 14 Mar 2025 11:30:00 +0000\n" +
	"Message-ID: <20250314113000.1234@mail.example.org>\n" +
	"MIME-Version: 1.0\n"

// compose builds a message from goodHeader changed by changes, each
// "Field: value" (replacing the field, or adding it) or "-Field" (removing
// it), and a body. A body that starts with "Content-Type:" brings its own
// MIME fields, up to its first empty line.
func compose(body string, changes ...string) string {
	header := goodHeader
	for _, c := range changes {
		name, _, _ := strings.Cut(strings.TrimPrefix(c, "-"), ":")
		var kept []string
		for line := range strings.SplitSeq(strings.TrimSuffix(header, "\n"), "\n") {
			if !strings.HasPrefix(strings.ToLower(line), strings.ToLower(name)+":") {
				kept = append(kept, line)
			}
		}
		if !strings.HasPrefix(c, "-") {
			kept = append(kept, c)
		}
		header = strings.Join(kept, "\n") + "\n"
	}
	if strings.HasPrefix(body, "Content-Type:") {
		return header + body
	}
	return header + "\n" + body
}

// scan runs the plugin at data on a message, with the envelope that words
// describe.
func scan(t testing.TB, p *sdktest.Plugin, words, msg string) sdk.Verdict {
	t.Helper()
	p.SetMessage([]byte(msg))
	return p.Handle(t, request(t, words))
}

// symbols are the symbols of a verdict's findings.
func symbols(v sdk.Verdict) []string {
	var s []string
	for _, f := range v.Findings {
		s = append(s, f.Symbol)
	}
	return s
}

// total is the sum of a verdict's findings.
func total(v sdk.Verdict) float64 {
	var t float64
	for _, f := range v.Findings {
		t += f.Score
	}
	return t
}

// describe writes a verdict as the README's tables do: the action (with
// its reply or reason), then the fields it adds.
func describe(v sdk.Verdict) string {
	var s string
	switch v.Action {
	case abi.Reject, abi.Tempfail:
		s = fmt.Sprintf("%s %d %s %s", v.Action, v.Code, v.Enhanced, v.Text)
	case abi.Quarantine:
		s = "quarantine: " + v.Text
	default:
		s = v.Action.String()
	}
	for _, h := range v.AddHeaders {
		s += "; " + h.Name + ": " + h.Value
	}
	return s
}

// hasAll reports the symbols of want that got misses, and those of not
// that it has.
func checkSymbols(t testing.TB, what string, got, want, not []string) {
	t.Helper()
	for _, s := range want {
		if !slices.Contains(got, s) {
			t.Errorf("%s: %s not found; found %v", what, s, got)
		}
	}
	for _, s := range not {
		if slices.Contains(got, s) {
			t.Errorf("%s: %s found, want not; found %v", what, s, got)
		}
	}
}
