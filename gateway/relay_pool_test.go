package gateway_test

import (
	"fmt"
	"strings"
	"testing"
)

// The report in issue 9: the destination (go-smtp, as the dev capture
// inbox is) refuses a message with a 3,000-character line in the middle
// of DATA, then reads the rest of the message as commands and answers
// "500 5.4.0 Too long line". The next sender, whose mail is fine, must
// get the destination's 250, not that 500, with idle connections kept
// (the default) or not.
func TestLongLineRefusalIsNotTheNextSendersAnswer(t *testing.T) {
	for _, relay := range []string{"", "max_idle = 0"} {
		t.Run(fmt.Sprintf("%q", relay), func(t *testing.T) {
			e := startEnv(t, envOptions{relay: relay})
			c := e.client(t)
			if err := c.Mail("alice@example.org", nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("info@ours.test", nil); err != nil {
				t.Fatal(err)
			}
			long := strings.Replace(testMessage, "Hello.", strings.Repeat("x", 3000), 1)
			if _, err := sendData(t, c, long); err == nil {
				t.Fatal("the destination accepted a line over its limit; the test needs it refused")
			}

			next := e.client(t)
			if err := next.Mail("bob@example.org", nil); err != nil {
				t.Fatalf("next sender's MAIL FROM: %v", err)
			}
			if err := next.Rcpt("info@ours.test", nil); err != nil {
				t.Fatalf("next sender's RCPT TO: %v, want 250", err)
			}
			if _, err := sendData(t, next, testMessage); err != nil {
				t.Fatalf("next sender's message: %v, want 250", err)
			}
			if got := e.dest.deliveries(); len(got) != 1 {
				t.Errorf("destination has %d messages, want the next sender's", len(got))
			}
		})
	}
}
