package gateway_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// scoringPlugins is the router and the scorer, a plugin that only reports
// findings (gateway/testdata/scorer), preceded by the [scoring] lines.
func scoringPlugins(t *testing.T, scoring string) string {
	return fmt.Sprintf(`
[scoring]
%s

%s

[[plugin]]
name = "scorer"
path = %q
capabilities = ["headers"]
[[plugin.config.rule]]
stage = "mail"
match = "promo"
symbol = "PROMO_SENDER"
score = 2.0
[[plugin.config.rule]]
stage = "rcpt"
match = "ours.test"
symbol = "OUR_RCPT"
score = 0.5
[[plugin.config.rule]]
stage = "data"
match = "cheap"
symbol = "CHEAP"
score = 4.5
[[plugin.config.rule]]
stage = "data"
match = "pills"
symbol = "PILLS"
score = 10.0
`, scoring, routerPlugin(t), wasmbuild.ForTest(t, "./gateway/testdata/scorer"))
}

func subjectMessage(subject string) string {
	return strings.Replace(testMessage, "Subject: a test", "Subject: "+subject, 1)
}

// fieldValues returns the values of a header field of a delivered message.
func fieldValues(msg []byte, name string) []string {
	header, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	var out []string
	for _, line := range strings.Split(string(header), "\r\n") {
		if n, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(n, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func TestScoringThresholds(t *testing.T) {
	e := startEnv(t, envOptions{plugins: scoringPlugins(t, "reject = 15.0\nquarantine = 6.0")})

	// Findings from the mail, rcpt and data stages add up. The rcpt
	// finding is made once per recipient and counts once.
	c := e.client(t)
	if err := c.Mail("promo@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"info@ours.test", "info+x@ours.test"} {
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatal(err)
		}
	}
	msg := strings.Replace(subjectMessage("cheap watches"), "\r\n\r\n", "\r\nX-Sluice-Score: -100 (FORGED=-100)\r\n\r\n", 1)
	if _, err := sendData(t, c, msg); err != nil {
		t.Fatalf("quarantined message refused: %v", err)
	}
	d := e.dest.deliveries()
	if len(d) != 1 {
		t.Fatalf("%d deliveries, want 1", len(d))
	}
	const want = "7 (CHEAP=4.5, PROMO_SENDER=2, OUR_RCPT=0.5)"
	if got := fieldValues(d[0].data, "X-Sluice-Score"); len(got) != 1 || got[0] != want {
		t.Errorf("X-Sluice-Score = %q, want only ours, %q (the sender's is stripped)", got, want)
	}
	if got := fieldValues(d[0].data, "X-Sluice-Quarantine"); len(got) != 1 || got[0] != "score "+want {
		t.Errorf("X-Sluice-Quarantine = %q, want the score", got)
	}
	if !strings.Contains(e.logs.String(), `score="`+want+`"`) {
		t.Errorf("the message's log line has no score %q:\n%s", want, e.logs.String())
	}

	// Over the reject threshold: refused at DATA, nothing delivered.
	err := e.send(t, "promo@example.org", "info@ours.test", subjectMessage("cheap pills"))
	wantReply(t, "score 17", err, 550, smtp.EnhancedCode{5, 7, 1}, "Message scored 17 (PILLS=10, CHEAP=4.5, PROMO_SENDER=2, OUR_RCPT=0.5)")

	// Below both: delivered, marked with its score only.
	if err := e.send(t, "alice@example.org", "info@ours.test", subjectMessage("pills")); err != nil {
		t.Fatal(err)
	}
	// Nothing found: no score field at all.
	if err := e.send(t, "alice@example.org", "info@ours.test", subjectMessage("hello")); err != nil {
		t.Fatal(err)
	}
	d = e.dest.deliveries()
	if len(d) != 3 {
		t.Fatalf("%d deliveries, want 3", len(d))
	}
	if got := fieldValues(d[1].data, "X-Sluice-Score"); len(got) != 1 || got[0] != "10.5 (PILLS=10, OUR_RCPT=0.5)" {
		t.Errorf("X-Sluice-Score = %q", got)
	}
	if got := fieldValues(d[1].data, "X-Sluice-Quarantine"); len(got) != 1 {
		t.Errorf("a score of 10.5 is over quarantine = 6: X-Sluice-Quarantine = %q", got)
	}
	if got := fieldValues(d[2].data, "X-Sluice-Score"); len(got) != 1 || got[0] != "0.5 (OUR_RCPT=0.5)" {
		t.Errorf("X-Sluice-Score = %q", got)
	}
	if got := fieldValues(d[2].data, "X-Sluice-Quarantine"); len(got) != 0 {
		t.Errorf("a score of 0.5 is quarantined: %q", got)
	}
}

// Without thresholds scores are recorded only: a message that would be
// refused above is delivered with its score.
func TestScoringRecordsOnlyByDefault(t *testing.T) {
	e := startEnv(t, envOptions{plugins: scoringPlugins(t, "")})
	if err := e.send(t, "promo@example.org", "info@ours.test", subjectMessage("cheap pills")); err != nil {
		t.Fatalf("refused without thresholds: %v", err)
	}
	d := e.dest.deliveries()
	if len(d) != 1 {
		t.Fatalf("%d deliveries", len(d))
	}
	if got := fieldValues(d[0].data, "X-Sluice-Score"); len(got) != 1 || got[0] != "17 (PILLS=10, CHEAP=4.5, PROMO_SENDER=2, OUR_RCPT=0.5)" {
		t.Errorf("X-Sluice-Score = %q", got)
	}
	if got := fieldValues(d[0].data, "X-Sluice-Quarantine"); len(got) != 0 {
		t.Errorf("quarantined without a threshold: %q", got)
	}
}
