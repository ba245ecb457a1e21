package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/srs"
)

// The open relay battery: every trick a spammer uses to make a mail
// server pass mail to someone else's domain. Each is refused with 550
// 5.7.1 (relay denied, or an SRS address we did not make) or with 501
// (not an address at all), before any plugin could forward it and before
// the destination is contacted. The router in this test forwards
// *@other.test, so a recipient the host let through would be relayed.
func TestOpenRelayBattery(t *testing.T) {
	e := startEnv(t, envOptions{})
	genuine := func(now time.Time, addr string) string {
		rw, err := srs.New(srs.Config{Domain: "ours.test", Secrets: []string{e.secret}, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		a, err := rw.Forward(addr)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	fresh := genuine(time.Now(), "user@other.test")
	otherSecret, _ := srs.New(srs.Config{Domain: "ours.test", Secrets: []string{"some-other-secret-0123456789"}})
	foreignMade, _ := otherSecret.Forward("user@other.test")

	relayDenied := smtp.EnhancedCode{5, 7, 1}
	syntax := smtp.EnhancedCode{5, 5, 2}
	cases := []struct {
		name string
		rcpt string
		code int
		enh  smtp.EnhancedCode
		text string
	}{
		{"plain foreign domain", "victim@other.test", 550, relayDenied, "relay access denied"},
		{"mixed case foreign domain", "Victim@Other.TEST", 550, relayDenied, "relay access denied"},
		{"percent hack", "user%other.test@ours.test", 550, relayDenied, "relay access denied"},
		{"percent hack, mixed case", "user%Other.Test@OURS.test", 550, relayDenied, "relay access denied"},
		{"double percent hack", "user%other.test%ours.test@ours.test", 550, relayDenied, "relay access denied"},
		{"quoted local part with @", `"user@other.test"@ours.test`, 550, relayDenied, "relay access denied"},
		{"quoted local part with %", `"user%other.test"@ours.test`, 550, relayDenied, "relay access denied"},
		{"quoted local part, escaped quote", `"user\"@other.test"@ours.test`, 550, relayDenied, "relay access denied"},
		{"source route", "@ours.test:user@other.test", 550, relayDenied, "relay access denied"},
		{"source route, two hops", "@ours.test,@mx.ours.test:user@other.test", 550, relayDenied, "relay access denied"},
		{"two at-signs", "user@other.test@ours.test", 550, relayDenied, "relay access denied"},
		{"bang path", "other.test!user@ours.test", 550, relayDenied, "relay access denied"},
		{"bang path, two hops", "ours.test!other.test!user@ours.test", 550, relayDenied, "relay access denied"},
		{"IPv4 address literal", "user@[127.0.0.1]", 550, relayDenied, "relay access denied"},
		{"IPv6 address literal", "user@[IPv6:::1]", 550, relayDenied, "relay access denied"},
		{"our address behind a literal", "info@[127.0.0.1]", 550, relayDenied, "relay access denied"},
		{"trailing dot", "info@ours.test.", 550, relayDenied, "relay access denied"},
		{"foreign domain, trailing dot", "victim@other.test.", 550, relayDenied, "relay access denied"},
		{"our domain as a subdomain of another", "info@ours.test.other.test", 550, relayDenied, "relay access denied"},
		{"our domain as a suffix", "info@evilours.test", 550, relayDenied, "relay access denied"},
		{"a subdomain of ours", "info@mail.ours.test", 550, relayDenied, "relay access denied"},
		{"UTF-8 foreign domain", "user@bücher.example", 550, relayDenied, "relay access denied"},
		{"IDN homograph of our domain (Cyrillic o)", "info@\u043eurs.test", 550, relayDenied, "relay access denied"},
		{"IDN homograph of our domain (Cyrillic e)", "info@ours.t\u0435st", 550, relayDenied, "relay access denied"},
		{"homograph as an A-label", "info@xn--urs-red.test", 550, relayDenied, "relay access denied"},
		{"SRS0 with a forged hash", "SRS0=abcd=ZZ=other.test=user@ours.test", 550, relayDenied, "bad hash"},
		{"SRS0 lower case, forged hash", "srs0=abcd=ZZ=other.test=user@ours.test", 550, relayDenied, "bad hash"},
		{"SRS1 with a forged hash", "SRS1=abcd=other.test==efgh=ZZ=example.org=user@ours.test", 550, relayDenied, "bad hash"},
		{"SRS0 made with another secret", foreignMade, 550, relayDenied, "bad hash"},
		{"genuine SRS0 with the user changed", strings.Replace(fresh, "=user@", "=victim@", 1), 550, relayDenied, "bad hash"},
		{"genuine SRS0 with the domain changed", strings.Replace(fresh, "=other.test=", "=victim.test=", 1), 550, relayDenied, "bad hash"},
		{"genuine SRS0, expired", genuine(time.Now().Add(-40*24*time.Hour), "user@other.test"), 550, relayDenied, "expired"},
		{"SRS0 without its parts", "SRS0=abcd@ours.test", 550, relayDenied, "malformed"},
		{"SRS address at a foreign domain", strings.Replace(fresh, "@ours.test", "@other.test", 1), 550, relayDenied, "relay access denied"},
		{"empty local part", "@ours.test", 501, syntax, "RCPT"},
		{"no domain", "user", 501, syntax, "RCPT"},
		{"empty domain", "user@", 501, syntax, "RCPT"},
		{"overlong address at our domain", strings.Repeat("a", 250) + "@ours.test", 501, smtp.EnhancedCode{5, 1, 3}, "longer than"},
		{"overlong foreign address", strings.Repeat("a", 300) + "@other.test", 501, smtp.EnhancedCode{5, 1, 3}, "longer than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := e.client(t)
			var opts *smtp.MailOptions
			if !isASCII(c.rcpt) {
				opts = &smtp.MailOptions{UTF8: true}
			}
			if err := cl.Mail("spammer@example.org", opts); err != nil {
				t.Fatal(err)
			}
			wantReply(t, "RCPT TO:<"+c.rcpt+">", cl.Rcpt(c.rcpt, nil), c.code, c.enh, c.text)
		})
	}
	if n := e.dest.connections(); n != 0 {
		t.Errorf("the destination was contacted %d times for relay attempts", n)
	}
}

// What go-smtp's client refuses to send (line breaks, NUL) goes over a
// bare connection: a recipient line with a bare CR or a NUL must not be
// read as two recipients or as our domain.
func TestOpenRelayBatteryRawLines(t *testing.T) {
	e := startEnv(t, envOptions{})
	lines := []string{
		"RCPT TO:<victim@other.test>\rRCPT TO:<info@ours.test>",
		"RCPT TO:<info@ours.test\r@other.test>",
		"RCPT TO:<victim@other.test\x00@ours.test>",
		"RCPT TO:<victim@other.test> <info@ours.test>",
		"RCPT TO:<victim@other.test>\x00<info@ours.test>",
		"RCPT TO:victim@other.test",
	}
	for _, line := range lines {
		c := rawConn(t, e.addr, "")
		for _, cmd := range []string{"EHLO sender.example.org", "MAIL FROM:<spammer@example.org>"} {
			c.send(cmd)
			if got := c.reply(); got[0] != '2' {
				t.Fatalf("%s: %q", cmd, got)
			}
		}
		c.send(line)
		got := c.reply()
		if !strings.HasPrefix(got, "550 5.7.1") && !strings.HasPrefix(got, "50") {
			t.Errorf("%q: %q, want 550 5.7.1 or a syntax error (500, 501)", line, got)
		}
		// Nothing was accepted: DATA has no recipient.
		c.send("DATA")
		if got := c.reply(); !strings.HasPrefix(got, "5") {
			t.Errorf("after %q, DATA: %q, want a refusal", line, got)
		}
		c.Close()
	}
	if n := e.dest.connections(); n != 0 {
		t.Errorf("the destination was contacted %d times for relay attempts", n)
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
