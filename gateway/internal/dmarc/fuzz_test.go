package dmarc

import (
	"testing"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/message"
)

func FuzzFromDomain(f *testing.F) {
	for _, h := range []string{
		"From: alice@example.org\r\n",
		"From: \"A\" <a@Bücher.example>\r\n",
		"From: G: a@b.example, c@d.example;\r\n",
		"From: =?utf-8?q?x?= <a@b.example>\r\n",
		"From: a@[192.0.2.1]\r\nFrom: x\r\n",
		"Subject: x\r\n\tfolded\r\nFrom: a\r\n @b.example\r\n",
	} {
		f.Add([]byte(h))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		domain, err := FromDomain(message.ParseHeader(header))
		if err != nil {
			return
		}
		// What comes back is already in the form Sluice compares.
		if again, err := address.Domain(domain); err != nil || again != domain {
			t.Fatalf("FromDomain = %q, not normalised: %q, %v", domain, again, err)
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	for _, r := range []string{
		"v=DMARC1; p=reject; sp=none; np=quarantine; pct=50; adkim=s; aspf=r; rua=mailto:a@b.example!10m",
		"v=DMARC1; p=block; rua=mailto:a@b.example",
		"v=DMARC1; p=none; pct=abc; fo=0:1:d:s; rf=afrf; ri=86400; ruf=mailto:x@y.example",
		"v=DMARC1;;;=;p=;sp",
		"p=none; v=DMARC1",
		"v=DMARC1; p=reject; psd=y; t=y; np=none",
		"v=DMARC1; psd=n; pct=0; t=maybe",
		"v=DMARC1",
	} {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		if !isDMARC1(txt) {
			return
		}
		if psd := psdOf(txt); psd != 'y' && psd != 'n' && psd != 'u' {
			t.Fatalf("%q: psd %q", txt, psd)
		}
		old, err := parseRecord(txt, PublicSuffix)
		if err == nil && old.testing {
			t.Fatalf("%q: test mode under RFC 7489", txt)
		}
		rec, err := parseRecord(txt, TreeWalk)
		if err != nil {
			return
		}
		if pct := rec.pct(TreeWalk); pct != 0 && pct != 100 {
			t.Fatalf("%q: pct %d under RFC 9989", txt, pct)
		}
		if _, ok := parsePolicy(string(rec.Policy)); !ok {
			t.Fatalf("%q: p = %q", txt, rec.Policy)
		}
		if rec.SubdomainPolicy != "" {
			if _, ok := parsePolicy(string(rec.SubdomainPolicy)); !ok {
				t.Fatalf("%q: sp = %q", txt, rec.SubdomainPolicy)
			}
		}
		if rec.np != "" {
			if _, ok := parsePolicy(string(rec.np)); !ok {
				t.Fatalf("%q: np = %q", txt, rec.np)
			}
		}
		if rec.Percent != nil && (*rec.Percent < 0 || *rec.Percent > 100) {
			t.Fatalf("%q: pct = %d", txt, *rec.Percent)
		}
		if rec.DKIMAlignment != dmarc.AlignmentRelaxed && rec.DKIMAlignment != dmarc.AlignmentStrict ||
			rec.SPFAlignment != dmarc.AlignmentRelaxed && rec.SPFAlignment != dmarc.AlignmentStrict {
			t.Fatalf("%q: adkim %q, aspf %q", txt, rec.DKIMAlignment, rec.SPFAlignment)
		}
	})
}
