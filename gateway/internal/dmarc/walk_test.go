package dmarc

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
)

// askedTXT is the real resolver, noting the TXT names it is asked for, in
// order, so that a test can say which names a walk queries.
type askedTXT struct {
	Resolver
	names []string
}

func (a *askedTXT) LookupTXT(ctx context.Context, name string) ([]string, error) {
	a.names = append(a.names, name)
	return a.Resolver.LookupTXT(ctx, name)
}

// dmarcNames is names with "_dmarc." before each.
func dmarcNames(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "_dmarc." + n
	}
	return out
}

// walkCase is one tree walk: a zone, where it starts, and what it finds.
type walkCase struct {
	name  string
	zone  string
	start string
	// org is the organizational domain of start; asked the _dmarc names
	// finding it queries, in order.
	org   string
	asked []string
	// policyDomain and policy are what Evaluate finds for mail from start
	// (no identifiers, so it fails); "" for no record (result none).
	policyDomain, policy string
}

// The examples of RFC 9989 §4.10 and §4.10.2 (a.mail.example.com), of its
// note on large, complex organizations (a long name whose psd=n record the
// walk never sees), and the edges of the walk.
var walkCases = []walkCase{
	{
		name: "RFC 9989 §4.10.2: records at mail.example.com and example.com",
		zone: `_dmarc.mail.example.com. IN TXT "v=DMARC1; p=none"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject"`,
		start: "a.mail.example.com", org: "example.com",
		asked:        dmarcNames("a.mail.example.com", "mail.example.com", "example.com", "com"),
		policyDomain: "example.com", policy: "reject",
	},
	{
		name: "RFC 9989 §4.10.2: psd=n at mail.example.com",
		zone: `_dmarc.mail.example.com. IN TXT "v=DMARC1; p=quarantine; psd=n"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject"`,
		start: "a.mail.example.com", org: "mail.example.com",
		asked:        dmarcNames("a.mail.example.com", "mail.example.com"),
		policyDomain: "mail.example.com", policy: "quarantine",
	},
	{
		name:  "RFC 9989 §4.10.2: only psd=y at com",
		zone:  `_dmarc.com. IN TXT "v=DMARC1; p=reject; sp=quarantine; psd=y"`,
		start: "a.mail.example.com", org: "example.com",
		asked: dmarcNames("a.mail.example.com", "mail.example.com", "example.com", "com"),
		// The organizational domain has no record: the PSD's applies.
		policyDomain: "com", policy: "quarantine",
	},
	{
		name:  "RFC 9989 §4.10: more than eight labels, no records",
		start: "a.b.c.d.e.f.g.h.i.j.mail.example.com", org: "a.b.c.d.e.f.g.h.i.j.mail.example.com",
		asked: dmarcNames("a.b.c.d.e.f.g.h.i.j.mail.example.com", "g.h.i.j.mail.example.com", "h.i.j.mail.example.com",
			"i.j.mail.example.com", "j.mail.example.com", "mail.example.com", "example.com", "com"),
	},
	{
		name: "RFC 9989, large organizations: a psd=n record the shortened walk never sees",
		zone: `_dmarc.example.com. IN TXT "v=DMARC1; p=reject"
_dmarc.b.c.d.e.f.g.example.com. IN TXT "v=DMARC1; p=none; psd=n"`,
		start: "mail.a.b.c.d.e.f.g.example.com", org: "example.com",
		asked: dmarcNames("mail.a.b.c.d.e.f.g.example.com", "c.d.e.f.g.example.com", "d.e.f.g.example.com",
			"e.f.g.example.com", "f.g.example.com", "g.example.com", "example.com", "com"),
		policyDomain: "example.com", policy: "reject",
	},
	{
		name:  "exactly eight labels: the parent, then one label at a time",
		start: "a.b.c.d.e.f.example.com", org: "a.b.c.d.e.f.example.com",
		asked: dmarcNames("a.b.c.d.e.f.example.com", "b.c.d.e.f.example.com", "c.d.e.f.example.com",
			"d.e.f.example.com", "e.f.example.com", "f.example.com", "example.com", "com"),
	},
	{
		name:  "a PSD record above the organizational domain's own",
		zone:  "_dmarc.example.com. IN TXT \"v=DMARC1; p=quarantine\"\n_dmarc.com. IN TXT \"v=DMARC1; p=reject; psd=y\"",
		start: "mail.example.com", org: "example.com",
		asked: dmarcNames("mail.example.com", "example.com", "com"),
		// RFC 9989 §4.10.1: PSD policy is not for organizational domains
		// that publish a record.
		policyDomain: "example.com", policy: "quarantine",
	},
	{
		name:  "psd=y on the shortened name: the organizational domain was never asked",
		zone:  `_dmarc.d.e.f.g.h.example.com. IN TXT "v=DMARC1; p=reject; psd=y"`,
		start: "a.b.c.d.e.f.g.h.example.com", org: "c.d.e.f.g.h.example.com",
		asked:        dmarcNames("a.b.c.d.e.f.g.h.example.com", "d.e.f.g.h.example.com"),
		policyDomain: "d.e.f.g.h.example.com", policy: "reject",
	},
	{
		name:  "psd=y at the From domain: its own record, its own organizational domain",
		zone:  `_dmarc.example.com. IN TXT "v=DMARC1; p=reject; psd=y"`,
		start: "example.com", org: "example.com",
		asked:        dmarcNames("example.com"),
		policyDomain: "example.com", policy: "reject",
	},
	{
		name: "psd=n at the From domain stops the walk",
		zone: `_dmarc.sub.example.com. IN TXT "v=DMARC1; p=none; psd=n"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject"`,
		start: "sub.example.com", org: "sub.example.com",
		asked:        dmarcNames("sub.example.com"),
		policyDomain: "sub.example.com", policy: "none",
	},
	{
		name: "psd=u (the default) at the From domain: the walk goes on",
		zone: `_dmarc.sub.example.com. IN TXT "v=DMARC1; p=none; psd=u"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject"`,
		start: "sub.example.com", org: "example.com",
		asked:        dmarcNames("sub.example.com", "example.com", "com"),
		policyDomain: "sub.example.com", policy: "none",
	},
	{
		name: "several records at one level are passed over",
		zone: `_dmarc.mail.example.com. IN TXT "v=DMARC1; p=none"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject; psd=n"`,
		start: "a.mail.example.com", org: "mail.example.com",
		asked:        dmarcNames("a.mail.example.com", "mail.example.com", "example.com", "com"),
		policyDomain: "mail.example.com", policy: "none",
	},
	{
		name:  "a record at a TLD without psd=y makes the TLD the organizational domain",
		zone:  "_dmarc.example.com. IN TXT \"v=DMARC1; p=reject\"\n_dmarc.com. IN TXT \"v=DMARC1; p=none\"",
		start: "mail.example.com", org: "com",
		asked:        dmarcNames("mail.example.com", "example.com", "com"),
		policyDomain: "com", policy: "none",
	},
	{
		name:  "other TXT records and other versions are no records",
		zone:  "_dmarc.example.com. IN TXT \"v=spf1 -all\"\n_dmarc.example.com. IN TXT \"v=DMARC2; p=reject\"\n_dmarc.com. IN TXT \"p=reject; v=DMARC1\"",
		start: "example.com", org: "example.com",
		asked: dmarcNames("example.com", "com"),
	},
}

func TestTreeWalk(t *testing.T) {
	for _, c := range walkCases {
		t.Run(c.name, func(t *testing.T) {
			s := dnstest.Start(t, c.zone)
			r := &askedTXT{Resolver: newTestResolver(t, s)}
			org, err := newEvaluation(context.Background(), r, TreeWalk).orgDomain(c.start)
			if err != nil || org != c.org {
				t.Errorf("organizational domain of %s = %q, %v; want %q", c.start, org, err, c.org)
			}
			if !slices.Equal(r.names, c.asked) {
				t.Errorf("asked\n%s\nwant\n%s", strings.Join(r.names, "\n"), strings.Join(c.asked, "\n"))
			}
			if queries := s.Queries(); queries != len(c.asked) || queries > maxWalk {
				t.Errorf("the DNS server answered %d queries, want %d (at most %d)", queries, len(c.asked), maxWalk)
			}

			// Cover, for the doctor, finds the same as Evaluate.
			cov, err := Cover(context.Background(), r, TreeWalk, c.start)
			if err != nil || cov.PolicyDomain != c.policyDomain || cov.Policy != c.policy || (c.policy != "" && cov.OrgDomain != c.org) || (c.policy == "") != (cov.Reason != "") {
				t.Errorf("Cover: %+v, %v; want policy %q from %q, organizational domain %s", cov, err, c.policy, c.policyDomain, c.org)
			}

			got := Evaluate(context.Background(), r, TreeWalk, c.start, Identifiers{})
			if c.policy == "" {
				if got.Result != None {
					t.Errorf("Evaluate: %+v, want none", got)
				}
				return
			}
			if got.Result != Fail || got.PolicyDomain != c.policyDomain || got.Policy != c.policy {
				t.Errorf("Evaluate: %+v, want fail with policy %s from %s", got, c.policy, c.policyDomain)
			}
		})
	}
}

// TestWalkNames checks the names of RFC 9989 §4.10 steps 3 to 7 for every
// length: never more than eight, always ending at the top label.
func TestWalkNames(t *testing.T) {
	labels := strings.Split("l.k.j.i.h.g.f.e.d.c.b.a", ".")
	for n := 1; n <= len(labels); n++ {
		domain := strings.Join(labels[len(labels)-n:], ".")
		names := walkNames(domain)
		if want := min(n, maxWalk); len(names) != want {
			t.Errorf("%s: %d names %v, want %d", domain, len(names), names, want)
		}
		if names[0] != domain || names[len(names)-1] != "a" {
			t.Errorf("%s: %v does not go from the name to the top label", domain, names)
		}
		for i := 1; i < len(names); i++ {
			if !strings.HasSuffix(names[i-1], "."+names[i]) {
				t.Errorf("%s: %q does not follow %q", domain, names[i], names[i-1])
			}
		}
	}
}

// TestTreeWalkTempError: a failed lookup at any level of the walk makes
// the result temperror, naming the name, since a record there could have
// changed which policy applies. SERVFAIL and a lookup that never answers
// are both DNS failures; NXDOMAIN at every level is just no record.
func TestTreeWalkTempError(t *testing.T) {
	const from = "a.b.c.d.e.f.g.h.i.j.mail.example.com"
	for _, name := range walkNames(from) {
		for _, fail := range []string{"servfail", "timeout"} {
			t.Run(fail+" at "+name, func(t *testing.T) {
				s := dnstest.Start(t, "")
				if fail == "servfail" {
					s.Fail("_dmarc."+name+".", dns.RcodeServerFailure)
				} else {
					s.Drop("_dmarc." + name + ".")
				}
				got := Evaluate(context.Background(), newTestResolver(t, s), TreeWalk, from, Identifiers{})
				if got.Result != TempError || !strings.Contains(got.Reason, "the DNS lookup of _dmarc."+name+" failed") {
					t.Fatalf("got %+v, want temperror naming _dmarc.%s", got, name)
				}
			})
		}
	}
}

// TestAlignmentByTreeWalk: relaxed alignment compares organizational
// domains found by walking from each domain, sharing the lookups; a walk
// that fails leaves the result temperror unless another identifier aligns.
func TestAlignmentByTreeWalk(t *testing.T) {
	const zone = `
_dmarc.example.com.        IN TXT "v=DMARC1; p=reject"
_dmarc.child.example.com.  IN TXT "v=DMARC1; p=reject; psd=n"
_dmarc.example.net.        IN TXT "v=DMARC1; p=reject"
`
	s := dnstest.Start(t, zone)
	s.Fail("_dmarc.broken.example.com.", dns.RcodeServerFailure)
	for _, c := range []struct {
		name, from string
		ids        Identifiers
		result     string
		spf, dkim  bool
	}{
		// The SPF and DKIM examples of RFC 9989's appendix.
		{"SPF strict", "example.com", spf("pass", "example.com"), Pass, true, false},
		{"SPF relaxed", "example.com", spf("pass", "bounce.example.com"), Pass, true, false},
		{"SPF not aligned", "news.example.com", spf("pass", "example.net"), Fail, false, false},
		{"DKIM strict", "example.com", dkim("pass", "example.com"), Pass, false, true},
		{"DKIM relaxed", "news.example.com", dkim("pass", "example.com"), Pass, false, true},
		{"DKIM not aligned", "news.example.com", dkim("pass", "example.net"), Fail, false, false},
		// psd=n makes child.example.com an organization of its own.
		{"psd=n parts organizations", "child.example.com", dkim("pass", "example.com"), Fail, false, false},
		{"psd=n below", "a.child.example.com", dkim("pass", "b.child.example.com"), Pass, false, true},
		// A walk that fails: the policy is known, alignment is not.
		{"walk of the identifier fails", "example.com", dkim("pass", "x.broken.example.com"), TempError, false, false},
		{"another identifier aligns", "example.com", Identifiers{SPFResult: Pass, SPFDomain: "example.com",
			DKIM: []DKIMResult{{Pass, "x.broken.example.com"}}}, Pass, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Evaluate(context.Background(), newTestResolver(t, s), TreeWalk, c.from, c.ids)
			if got.Result != c.result || got.SPFAligned != c.spf || got.DKIMAligned != c.dkim {
				t.Fatalf("got %+v, want %s (SPF aligned %v, DKIM aligned %v)", got, c.result, c.spf, c.dkim)
			}
		})
	}
}

// TestUnrelatedIdentifierNoWalk: an identifier outside the From domain's
// organizational domain cannot align, so it costs no lookups.
func TestUnrelatedIdentifierNoWalk(t *testing.T) {
	s := dnstest.Start(t, `_dmarc.example.com. IN TXT "v=DMARC1; p=reject"`)
	r := &askedTXT{Resolver: newTestResolver(t, s)}
	got := Evaluate(context.Background(), r, TreeWalk, "example.com", spf("pass", "a.b.c.d.e.f.g.h.example.net"))
	if got.Result != Fail {
		t.Fatalf("got %+v, want fail", got)
	}
	if want := dmarcNames("example.com", "com"); !slices.Equal(r.names, want) {
		t.Fatalf("asked %v, want %v", r.names, want)
	}
}

// TestNonExistentByNXDOMAIN: under RFC 9989 one lookup that answers
// NXDOMAIN says a name does not exist, so np applies after a single A
// query; RFC 9091 (rfc7489) asks A, AAAA and MX.
func TestNonExistentByNXDOMAIN(t *testing.T) {
	const zone = `_dmarc.example.com. IN TXT "v=DMARC1; p=none; np=reject"`
	for _, c := range []struct {
		how     Discovery
		queries int // the _dmarc names, then existence
	}{{TreeWalk, 3 + 1}, {PublicSuffix, 2 + 3}} {
		t.Run(c.how.String(), func(t *testing.T) {
			s := dnstest.Start(t, zone)
			got := Evaluate(context.Background(), newTestResolver(t, s), c.how, "ghost.example.com", Identifiers{})
			if got.Policy != "reject" || got.PolicyDomain != "example.com" {
				t.Fatalf("got %+v, want np=reject from example.com", got)
			}
			if s.Queries() != c.queries {
				t.Fatalf("%d queries, want %d", s.Queries(), c.queries)
			}
		})
	}
}

func TestParseDiscovery(t *testing.T) {
	for in, want := range map[string]Discovery{"": TreeWalk, "rfc9989": TreeWalk, "rfc7489": PublicSuffix} {
		if got, err := ParseDiscovery(in); err != nil || got != want || (in != "" && got.String() != in) {
			t.Errorf("ParseDiscovery(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDiscovery("RFC9989"); err == nil {
		t.Error("ParseDiscovery accepted RFC9989")
	}
}

// TestPublicSuffixDiscovery: with rfc7489 there is no walk: the From
// domain and its organizational domain by the public suffix list are the
// only names asked, and a psd=y record at a top-level domain is never seen.
func TestPublicSuffixDiscovery(t *testing.T) {
	s := dnstest.Start(t, `_dmarc.com. IN TXT "v=DMARC1; p=reject; psd=y"`)
	r := &askedTXT{Resolver: newTestResolver(t, s)}
	got := Evaluate(context.Background(), r, PublicSuffix, "a.b.c.d.e.f.g.h.i.j.mail.example.com", Identifiers{})
	if got.Result != None {
		t.Errorf("got %+v, want none", got)
	}
	if want := dmarcNames("a.b.c.d.e.f.g.h.i.j.mail.example.com", "example.com"); !slices.Equal(r.names, want) {
		t.Errorf("asked %v, want %v", r.names, want)
	}
}
