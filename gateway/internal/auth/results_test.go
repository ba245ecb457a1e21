package auth

import (
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/sdk/abi"
)

func TestStripForged(t *testing.T) {
	header := "Authentication-Results: mx.ours.test; spf=pass smtp.mailfrom=forged@example.org\r\n" +
		"Authentication-Results: (comment) MX.OURS.TEST 1 ; dkim=pass\r\n" +
		"Authentication-Results:\r\n\tmx.ours.test;\r\n\tdmarc=pass\r\n" +
		"Authentication-Results: mx.example.net; spf=fail\r\n" +
		"Authentication-Results: mx.ours.test.evil.test; spf=pass\r\n" +
		"X-Sluice-DMARC-Override: arc; sealer=forged.test; policy=reject\r\n" +
		"x-sluice-quarantine: no\r\n" +
		"X-Sluicer: kept\r\n" +
		"Subject: hello\r\n"
	got := string(StripForged(message.ParseHeader([]byte(header)), "mx.ours.test").Bytes())
	want := "Authentication-Results: mx.example.net; spf=fail\r\n" +
		"Authentication-Results: mx.ours.test.evil.test; spf=pass\r\n" +
		"X-Sluicer: kept\r\n" +
		"Subject: hello\r\n"
	if got != want {
		t.Errorf("StripForged:\n%s\nwant:\n%s", got, want)
	}
}

func TestResults(t *testing.T) {
	r := Report{
		Auth: abi.Auth{
			SPF:   abi.SPF{Result: "pass", Domain: "example.org"},
			ARC:   abi.ARC{Result: "pass", Instances: 3, OldestPass: 2},
			DMARC: abi.DMARC{Result: "fail", FromDomain: "example.org", Policy: "reject", Reason: "neither SPF nor DKIM (aligned)"},
		},
		dkim: []dkim.Result{
			{Result: "pass", Domain: "example.org", Selector: "s1", Algorithm: "rsa-sha256"},
			{Result: "fail", Domain: "x.test", Selector: "s2", Algorithm: "ed25519-sha256", Reason: "body hash did not verify"},
		},
	}
	got := r.Results("SRS0=ab=CD=example.org=a@fwd.test", "mx.example.org")
	want := `spf=pass smtp.mailfrom="SRS0=ab=CD=example.org=a@fwd.test"; ` +
		"dkim=pass header.d=example.org header.s=s1 header.a=rsa-sha256; " +
		"dkim=fail (body hash did not verify) header.d=x.test header.s=s2 header.a=ed25519-sha256; " +
		"arc=pass header.oldest-pass=2; " +
		"dmarc=fail (p=reject, neither SPF nor DKIM aligned) header.from=example.org"
	if got != want {
		t.Errorf("Results:\n%s\nwant:\n%s", got, want)
	}
	// A plugin's dmarc entry replaces ours; a new method is added.
	got = r.Results("a@example.org", "h", "dmarc=fail (p=reject not applied: trusted ARC sealer l.test) header.from=example.org", "x-spam=pass")
	if !strings.HasSuffix(got, "arc=pass header.oldest-pass=2; dmarc=fail (p=reject not applied: trusted ARC sealer l.test) header.from=example.org; x-spam=pass") ||
		strings.Count(got, "dmarc=") != 1 {
		t.Errorf("with plugin results: %s", got)
	}
	null := Report{Auth: abi.Auth{SPF: abi.SPF{Result: "none"}}}
	if got := null.Results("", "client.example"); got != "spf=none smtp.helo=client.example; dkim=none" {
		t.Errorf("null sender: %q", got)
	}
	if got := (&Report{}).Results("", ""); got != "dkim=none" {
		t.Errorf("nothing checked: %q", got)
	}
	if strings.Contains(comment("a) b (c"), ")") && strings.Count(comment("a) b (c"), "(") != 1 {
		t.Error("a comment is not balanced")
	}
}

// A header with nothing to strip comes back as it is, not copied.
func TestStripForgedKeepsCleanHeader(t *testing.T) {
	header := message.ParseHeader([]byte("Authentication-Results: other.test; spf=pass\r\nSubject: x\r\n"))
	if got := StripForged(header, "mx.ours.test"); got != header {
		t.Errorf("StripForged = %q, a copy; want the header itself", got.Bytes())
	}
}
