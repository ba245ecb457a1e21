package gateway_test

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// A policy in test mode (RFC 9989's t=y) is applied one level lower: the
// gateway reports it as pct=0, which the dmarc plugin already answers with
// the next milder policy, so a reject becomes a quarantine. With
// dmarc_discovery = "rfc7489", t is an unknown tag and the reject stands.
func TestDMARCTestingMode(t *testing.T) {
	const records = `
testing.example.        300 IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.testing.example. 300 IN TXT "v=DMARC1; p=reject; t=y"
`
	msg := "From: Tess <tess@testing.example>\r\nSubject: not yet enforced\r\n\r\nhello\r\n"
	for _, c := range []struct {
		discovery string
		reject    bool
	}{{"", false}, {`"rfc9989"`, false}, {`"rfc7489"`, true}} {
		t.Run("dmarc_discovery="+c.discovery, func(t *testing.T) {
			var o envOptions
			if c.discovery != "" {
				o.auth = "dmarc_discovery = " + c.discovery
			}
			e := startEnv(t, o)
			if err := e.dns.SetRecords(e.zone + records); err != nil {
				t.Fatal(err)
			}
			err := e.send(t, "tess@testing.example", "info@ours.test", msg)
			if c.reject {
				wantReply(t, "t=y under rfc7489", err, 550, smtp.EnhancedCode{5, 7, 1},
					"testing.example's DMARC policy is reject")
				return
			}
			if err != nil {
				t.Fatalf("t=y: %v, want the message quarantined and forwarded", err)
			}
			got := e.dest.deliveries()[0].data
			if q := fieldValue(got, "X-Sluice-Quarantine"); !strings.Contains(q, "testing.example") {
				t.Errorf("X-Sluice-Quarantine = %q", q)
			}
		})
	}
}
