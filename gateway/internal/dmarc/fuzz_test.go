package dmarc

import (
	"testing"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/sluice-mail/sluice/gateway/internal/address"
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
		domain, err := FromDomain(header)
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
	} {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		if !isDMARC1(txt) {
			return
		}
		rec, err := parseRecord(txt, TreeWalk)
		if err != nil {
			return
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
