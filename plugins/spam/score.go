package main

import (
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// The fields the plugin writes. A sender's own are removed first, so that
// a mailbox's filter on them can trust them.
const (
	scoreField   = "X-Spam-Score"
	symbolsField = "X-Spam-Symbols"
	flagField    = "X-Spam-Flag"
)

// topSymbols is how many symbols a reject reply names: enough to say why,
// short enough for one reply line.
const topSymbols = 3

// maxListed is how many symbols X-Spam-Symbols and a quarantine reason
// name: a request may bring hundreds of other plugins' findings.
const maxListed = 50

// score checks a message and answers with its findings, the X-Spam fields,
// and the action its thresholds give on the total: the findings of the
// plugins before it (req.Findings) and its own.
func (c *config) score(req *sdk.Request, now time.Time) sdk.Verdict {
	f := newFindings(c.scores)
	authentication(f, &req.Auth)
	c.client(f, req)
	m, err := read(c.limits)
	if err != nil {
		// A message the plugin cannot read is scored on what the gateway
		// found; refusing it would hold the sender to our failure.
		sdk.Log(4, "cannot read the message, scoring the envelope only: "+err.Error())
		if fromAtFault(&req.Auth.DMARC) {
			f.add(fromInvalid)
		}
	} else {
		c.headers(f, m.header, now)
		c.fromField(f, m.header, &req.Auth.DMARC)
		c.body(f, m)
		c.uriblCheck(f, m)
	}
	return c.verdict(f, m, req.Findings)
}

// read reads the message's header and the first max_bytes of its body.
func read(lim limits) (*message, error) {
	block, err := sdk.HeaderBlock()
	if err != nil {
		return nil, err
	}
	size, err := sdk.BodySize()
	if err != nil {
		return nil, err
	}
	body := make([]byte, min(size, lim.bytes))
	n, err := sdk.ReadBodyAt(body, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return parseMessage(block, body[:n], lim), nil
}

// verdict turns the findings into the plugin's answer: its thresholds and
// fields go by the total of the earlier plugins' findings and its own. m
// is nil if the message could not be read.
func (c *config) verdict(f *findings, m *message, earlier []abi.PluginFinding) sdk.Verdict {
	symbols := combine(earlier, f.list)
	var total float64
	for _, s := range symbols {
		total += s.Score
	}
	slices.SortStableFunc(symbols, func(a, b abi.Finding) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	var v sdk.Verdict
	switch {
	case c.reject > 0 && total >= c.reject:
		v = sdk.Reject(550, "5.7.1", "Message rejected as spam, score "+summary(total, symbols, topSymbols))
	case c.quarantine > 0 && total >= c.quarantine:
		v = sdk.Quarantine("spam score " + summary(total, symbols, maxListed))
		if c.subjectTag != "" && m != nil {
			v = tagSubject(v, c.subjectTag, m.header["Subject"])
		}
	default:
		v = sdk.Continue()
	}
	if c.addFields && v.Action != abi.Reject {
		flag := "NO"
		if c.flag > 0 && total >= c.flag {
			flag = "YES"
		}
		v = v.RemoveHeader(scoreField).RemoveHeader(symbolsField).RemoveHeader(flagField).
			AddHeader(scoreField, formatScore(total))
		if len(symbols) > 0 {
			v = v.AddHeader(symbolsField, list(symbols, maxListed))
		}
		v = v.AddHeader(flagField, flag)
	}
	for _, s := range f.list {
		v = v.Finding(s.Symbol, s.Score)
	}
	return v
}

// combine adds the plugin's own findings to those of the plugins before
// it as the gateway adds up a score: each symbol once, the last score
// standing (its own over an earlier plugin's). Its own always count,
// however many came before.
func combine(earlier []abi.PluginFinding, own []abi.Finding) []abi.Finding {
	all := make([]abi.Finding, 0, len(earlier)+len(own))
	at := make(map[string]int, len(earlier)+len(own))
	add := func(f abi.Finding) {
		if i, ok := at[f.Symbol]; ok {
			all[i].Score = f.Score
			return
		}
		at[f.Symbol] = len(all)
		all = append(all, f)
	}
	for _, e := range earlier {
		add(abi.Finding{Symbol: e.Symbol, Score: e.Score})
	}
	for _, o := range own {
		add(o)
	}
	return all
}

// tagSubject puts tag before the subject, replacing the field. The
// subject stays as written, encoded words and all.
func tagSubject(v sdk.Verdict, tag string, subject []string) sdk.Verdict {
	old := ""
	if len(subject) > 0 {
		old = strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return ' '
			}
			return r
		}, subject[0])
	}
	if strings.HasPrefix(old, tag) {
		return v
	}
	return v.RemoveHeader("Subject").AddHeader("Subject", strings.TrimSpace(tag+" "+old))
}

// summary is "16.5 (SYMBOL_A=10, SYMBOL_B=6.5, ...)": the total and the
// first n symbols.
func summary(total float64, symbols []abi.Finding, n int) string {
	return formatScore(total) + " (" + list(symbols, n) + ")"
}

// list writes the first n symbols as SYMBOL=score, and ... for the rest.
func list(symbols []abi.Finding, n int) string {
	var b strings.Builder
	for i, s := range symbols {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == n {
			b.WriteString("...")
			break
		}
		b.WriteString(s.Symbol + "=" + formatScore(s.Score))
	}
	return b.String()
}

// formatScore writes a score with at most two decimals, as the gateway's
// X-Sluice-Score does.
func formatScore(f float64) string {
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}
