package gateway_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// Each request carries the findings reported before it in the transaction:
// at earlier stages (a symbol found for each recipient once) and by the
// plugins before it at the same stage. The spam plugin, last, acts on that
// total: a message its own checks would pass is quarantined with its
// Subject tagged, and its X-Spam-Score is the gateway's X-Sluice-Score.
func TestPluginsSeeEarlierFindings(t *testing.T) {
	plugins := scoringPlugins(t, "") + fmt.Sprintf(`
[[plugin]]
name = "seen"
path = %q
stages = ["mail", "rcpt", "data"]
[plugin.config]
permit = ["add_headers"]
header = "X-Seen: {findings}"

[[plugin]]
name = "spam"
path = %q
capabilities = ["headers", "body", "dns"]
[plugin.config]
quarantine = 6.0
`, wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"), wasmbuild.ForTest(t, "./plugins/spam"))
	e := startEnv(t, envOptions{plugins: plugins})

	c := e.client(t)
	if err := c.Mail("promo@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"info@ours.test", "info+x@ours.test"} {
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sendData(t, c, subjectMessage("cheap watches")); err != nil {
		t.Fatalf("message refused: %v", err)
	}
	d := e.dest.deliveries()
	if len(d) != 1 {
		t.Fatalf("%d deliveries, want 1", len(d))
	}
	msg := d[0].data
	want := []string{
		"scorer:PROMO_SENDER=2",                                        // mail
		"scorer:PROMO_SENDER=2, scorer:OUR_RCPT=0.5",                   // the first rcpt
		"scorer:PROMO_SENDER=2, scorer:OUR_RCPT=0.5",                   // the second: OUR_RCPT once
		"scorer:PROMO_SENDER=2, scorer:OUR_RCPT=0.5, scorer:CHEAP=4.5", // data
	}
	if got := fieldValues(msg, "X-Seen"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("X-Seen =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	unfolded := []byte(strings.ReplaceAll(string(msg), "\r\n\t", " "))
	total := fieldValues(unfolded, "X-Sluice-Score")
	score := fieldValues(msg, "X-Spam-Score")
	if len(total) != 1 || len(score) != 1 || !strings.HasPrefix(total[0], score[0]+" (") {
		t.Fatalf("X-Spam-Score %q, X-Sluice-Score %q: want the same total", score, total)
	}
	// The spam plugin's own findings are what the total has beyond the
	// scorer's 7: under its threshold of 6 alone.
	var own float64
	if _, err := fmt.Sscan(score[0], &own); err != nil || own-7 >= 6 || own < 6 {
		t.Errorf("X-Spam-Score %q: want at least 6, with under 6 of the spam plugin's own", score)
	}
	if got := fieldValues(msg, "Subject"); len(got) != 1 || got[0] != "[SPAM] cheap watches" {
		t.Errorf("Subject = %q, want tagged", got)
	}
	if got := fieldValues(msg, "X-Sluice-Quarantine"); len(got) != 1 || !strings.HasPrefix(got[0], "spam score "+score[0]+" (CHEAP=4.5, PROMO_SENDER=2") {
		t.Errorf("X-Sluice-Quarantine = %q, want the spam plugin's reason with the total", got)
	}
	// Both list the same symbols, highest first.
	symbols := fieldValues(unfolded, "X-Spam-Symbols")
	if len(symbols) != 1 || total[0] != score[0]+" ("+symbols[0]+")" {
		t.Errorf("X-Spam-Symbols = %q, want those of X-Sluice-Score %q", symbols, total[0])
	}
}

// The spam plugin reads a From field that net/mail refuses as a reader
// shows it: an unquoted display name with an @ is the commonest forged
// sender, and the gateway's DMARC permerror for it is the From's fault,
// not a broken record's. A message without From is scored too.
func TestSpamMalformedFrom(t *testing.T) {
	plugins := routerPlugin(t) + fmt.Sprintf(`
[[plugin]]
name = "spam"
path = %q
capabilities = ["headers", "body", "dns"]
`, wasmbuild.ForTest(t, "./plugins/spam"))
	e := startEnv(t, envOptions{plugins: plugins})
	cases := []struct {
		name      string
		from      string // the From line, "" for none
		want, not []string
	}{
		{"unquoted display name", "From: support@paypal.com <x@evil.example>\r\nReply-To: <claims.dept@gmail.com>\r\n",
			[]string{"SPOOF_DISPLAY_NAME=6", "FREEMAIL_REPLYTO_NEQ_FROM_DOM=3", "FROM_INVALID=2"}, []string{"DMARC_BAD_POLICY", "MISSING_FROM"}},
		{"no From", "", []string{"MISSING_FROM=2"}, []string{"DMARC_BAD_POLICY", "FROM_INVALID"}},
	}
	for _, c := range cases {
		msg := strings.Replace(testMessage, "From: Alice <alice@example.org>\r\n", c.from, 1)
		if err := e.send(t, "alice@example.org", "info@ours.test", msg); err != nil {
			t.Fatalf("%s: message refused: %v", c.name, err)
		}
		d := e.dest.deliveries()
		delivered := []byte(strings.ReplaceAll(string(d[len(d)-1].data), "\r\n\t", " "))
		if got := fieldValues(delivered, "Authentication-Results"); !strings.Contains(strings.Join(got, " "), "dmarc=permerror") {
			t.Errorf("%s: Authentication-Results %q, want dmarc=permerror", c.name, got)
		}
		symbols := strings.Join(fieldValues(delivered, "X-Spam-Symbols"), "")
		for _, s := range c.want {
			if !strings.Contains(symbols, s) {
				t.Errorf("%s: X-Spam-Symbols %q, want %s", c.name, symbols, s)
			}
		}
		for _, s := range c.not {
			if strings.Contains(symbols, s) {
				t.Errorf("%s: X-Spam-Symbols %q, want no %s", c.name, symbols, s)
			}
		}
	}
}
