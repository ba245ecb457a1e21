package smtpd

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
)

// FuzzLocalRecipient feeds the relay protection arbitrary recipients, as
// go-smtp hands them over. Whatever a plugin would later say, a recipient
// passes only if it is a plain local part at one of our domains, or an SRS
// address at the SRS domain whose hash checks out (a bounce, which goes
// back to the sender it names). Everything else is refused with a 5xx
// reply, never a panic. Seeds (testdata/fuzz/FuzzLocalRecipient) are the
// relay tricks of the README, and addresses made by Forward at the fixed
// time below.
func FuzzLocalRecipient(f *testing.F) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	rw, err := srs.New(srs.Config{Domain: "ours.test", Secrets: []string{"fuzz-secret"}, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	domains := []string{"ours.test", "xn--bcher-kva.example"}
	s := &Server{cfg: Config{Hostname: "mx.ours.test", Domains: domains, SRSDomain: "ours.test"}, domains: map[string]bool{}}
	for _, d := range domains {
		s.domains[d] = true
	}
	for _, from := range []string{"alice@example.org", "SRS0=abcd=JP=example.net=bob@forwarder.example"} {
		fwd, err := rw.Forward(from)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fwd)
	}
	f.Fuzz(func(t *testing.T, to string) {
		bounceTo, err := s.localRecipient(to, rw)
		if err != nil {
			var reply *smtp.SMTPError
			if !errors.As(err, &reply) || reply.Code < 500 || reply.Code > 599 || reply.EnhancedCode[0] != 5 {
				t.Fatalf("localRecipient(%q): %v, want a 5xx SMTP reply", to, err)
			}
			return
		}
		at := strings.LastIndexByte(to, '@')
		if at <= 0 {
			t.Fatalf("localRecipient accepted %q, which has no local part and domain", to)
		}
		local := to[:at]
		domain, derr := address.Domain(to[at+1:])
		if derr != nil || !s.domains[domain] {
			t.Fatalf("localRecipient accepted %q, whose domain %q is not ours (%v)", to, to[at+1:], derr)
		}
		if strings.ContainsAny(local, "@%!") || strings.HasPrefix(local, "@") {
			t.Fatalf("localRecipient accepted %q, whose local part routes elsewhere", to)
		}
		if bounceTo == "" {
			return
		}
		if !srs.IsSRS(to) || domain != "ours.test" {
			t.Fatalf("localRecipient(%q) bounces to %q, but that is not an SRS address at the SRS domain", to, bounceTo)
		}
		if again, err := rw.Reverse(to); err != nil || again != bounceTo {
			t.Fatalf("localRecipient(%q) bounces to %q; Reverse says %q, %v", to, bounceTo, again, err)
		}
	})
}
