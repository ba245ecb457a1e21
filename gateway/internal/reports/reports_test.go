package reports

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
	"github.com/sluice-mail/sluice/gateway/internal/reports/reportcheck"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// collected stands in for the queue: it keeps what is enqueued.
type collected struct {
	mu   sync.Mutex
	msgs []*queue.Message
}

func (c *collected) Enqueue(_ context.Context, m *queue.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m.ID = "q" + string(rune('0'+len(c.msgs)))
	c.msgs = append(c.msgs, m)
	return nil
}

func (c *collected) list() []*queue.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

const zone = `
_dmarc.sender.example.          IN TXT "v=DMARC1; p=reject; adkim=s; rua=mailto:dmarc@sender.example,mailto:agg@reports.example!10m,mailto:x@unverified.example,mailto:y@sneaky.example,mailto:old@redirect.example"
sender.example._report._dmarc.reports.example. IN TXT "v=DMARC1"
sender.example._report._dmarc.redirect.example. IN TXT "v=DMARC1; rua=mailto:new@redirect.example"
sender.example._report._dmarc.sneaky.example.  IN TXT "v=DMARC1; rua=mailto:z@elsewhere.example"
_dmarc.quiet.example.           IN TXT "v=DMARC1; p=none"
_smtp._tls.dest.example.        IN TXT "v=TLSRPTv1; rua=mailto:tls@dest.example,https://tlsrpt.dest.example/v1"
`

// env is a Reports with a DNS zone, a signer and a stand-in queue.
type env struct {
	r     *Reports
	q     *collected
	clock *fakeclock.Clock
	keys  map[string]string // for dkimpy
	dir   string
	dns   *dnstest.Server
}

func newEnv(t *testing.T, dmarcOn, tlsOn bool) *env {
	t.Helper()
	key, err := dkim.GenerateKey("rsa", 0)
	if err != nil {
		t.Fatal(err)
	}
	txt, err := dkim.TXTRecord(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := dkim.NewSigner(dkim.SignerConfig{Domain: "gateway.example", Keys: []dkim.Key{{Selector: "sel", Signer: key}}})
	if err != nil {
		t.Fatal(err)
	}
	dns := dnstest.Start(t, zone)
	res, err := resolver.New(resolver.Config{Nameservers: []string{dns.Addr()}, Timeout: 500 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{q: &collected{}, clock: fakeclock.New(time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)),
		keys: map[string]string{"sel._domainkey.gateway.example": txt}, dir: filepath.Join(t.TempDir(), "reports"), dns: dns}
	e.r = New(Config{
		Dir: e.dir, DMARC: dmarcOn, TLS: tlsOn,
		From: "postmaster@gateway.example", OrgName: "Gateway Org", Hostname: "mx.gateway.example",
		Resolver: func() dmarc.Resolver { return res },
		Signer:   func() *dkim.Signer { return signer },
		Queue:    e.q,
		Now:      e.clock.Now,
	})
	if err := e.r.Start(t.Context(), time.Hour); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.r.Close)
	return e
}

func pass(ip, mfrom string) DMARCRecord {
	return DMARCRecord{SourceIP: ip, HeaderFrom: "sender.example", EnvelopeFrom: mfrom, PolicyDomain: "sender.example",
		Disposition: "none", Policy: "reject", Pct: 100, DKIMAligned: true, SPFAligned: true,
		DKIM:      []DKIMAuth{{Domain: "sender.example", Selector: "s1", Result: "pass"}},
		SPFDomain: mfrom, SPFResult: "pass"}
}

func fail(ip, disposition string) DMARCRecord {
	return DMARCRecord{SourceIP: ip, HeaderFrom: "sender.example", EnvelopeFrom: "spoof.example", PolicyDomain: "sender.example",
		Disposition: disposition, Policy: "reject", Pct: 100, SPFDomain: "spoof.example", SPFResult: "fail",
		DKIM: []DKIMAuth{{Domain: "spoof.example", Selector: "x", Result: "fail"}}}
}

func TestDMARCAggregateReport(t *testing.T) {
	e := newEnv(t, true, false)
	for range 3 {
		e.r.DMARC(pass("192.0.2.1", "sender.example"))
	}
	e.r.DMARC(fail("2001:db8::7", "reject"))
	e.r.DMARC(fail("2001:db8::7", "reject"))
	e.r.DMARC(fail("198.51.100.9", "quarantine"))
	sampled := fail("203.0.113.5", "none")
	sampled.Pct = 0 // the policy in test mode (t=y)
	e.r.DMARC(sampled)
	halved := fail("203.0.113.6", "quarantine")
	halved.Pct = 50 // an RFC 7489 record's pct=50: the milder policy for the rest
	e.r.DMARC(halved)
	noSPF := fail("203.0.113.7", "reject")
	noSPF.EnvelopeFrom, noSPF.SPFDomain, noSPF.SPFResult = "", "", "" // null sender, HELO an address literal
	e.r.DMARC(noSPF)
	// A domain whose record asks for no reports, and one seen without
	// DMARC at all, get none.
	e.r.DMARC(DMARCRecord{SourceIP: "192.0.2.1", HeaderFrom: "quiet.example", PolicyDomain: "quiet.example", Disposition: "none", SPFResult: "pass"})
	e.r.DMARC(DMARCRecord{SourceIP: "192.0.2.1", HeaderFrom: "nodmarc.example", Disposition: "none"})

	// The day is not over: nothing goes.
	if err := e.r.SendDue(t.Context(), e.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := e.q.list(); len(got) != 0 {
		t.Fatalf("reports sent before the day ended: %d", len(got))
	}
	next := time.Date(2026, 5, 5, 0, 1, 0, 0, time.UTC)
	e.clock.Set(next)
	if err := e.r.SendDue(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	got := e.q.list()
	// One message per destination domain: sender.example,
	// reports.example (verified) and redirect.example (verified, to the
	// address its record names instead: RFC 9990 §4, step 9), not
	// unverified.example (no record) nor sneaky.example (its record
	// sends reports elsewhere).
	var domains []string
	for _, m := range got {
		domains = append(domains, m.Domain())
		if m.Domain() == "redirect.example" && (len(m.Recipients) != 1 || m.Recipients[0].To != "new@redirect.example") {
			t.Errorf("the report to redirect.example goes to %+v, want new@redirect.example", m.Recipients)
		}
		if m.Kind != queue.Report || m.From != "postmaster@gateway.example" || m.MayBounce || m.TLSReport {
			t.Errorf("queued as %+v", m)
		}
	}
	if want := []string{"redirect.example", "reports.example", "sender.example"}; !slices.Equal(domains, want) {
		t.Fatalf("reports went to %v, want %v", domains, want)
	}
	msg := got[0].Data
	if r := dkimpy.Check(t, msg, e.keys); len(r.DKIM) != 1 || !r.DKIM[0] {
		t.Errorf("dkimpy: the report's signature does not verify: %+v", r)
	}
	p := reportcheck.Parse(t, msg)
	begin, end := "1777852800", "1777939199" // 2026-05-04, UTC
	if want := "Report Domain: sender.example Submitter: mx.gateway.example Report-ID: <20260504.sender.example@mx.gateway.example>"; unfold(p.Headers["Subject"]) != want {
		t.Errorf("Subject = %q, want %q", p.Headers["Subject"], want)
	}
	if p.Headers["From"] != "postmaster@gateway.example" || !strings.Contains(p.Headers["To"], "agg@reports.example") ||
		strings.Contains(p.Headers["To"], "unverified") {
		t.Errorf("From %q To %q", p.Headers["From"], p.Headers["To"])
	}
	if want := "mx.gateway.example!sender.example!" + begin + "!" + end + ".xml.gz"; p.Filename != want || p.AttachmentType != "application/gzip" {
		t.Errorf("attachment %q (%s), want %q (application/gzip)", p.Filename, p.AttachmentType, want)
	}
	reportcheck.Validate(t, p.Attachment)

	var f feedback
	if err := xml.Unmarshal([]byte(p.Attachment), &f); err != nil {
		t.Fatal(err)
	}
	if f.XMLName.Space != "urn:ietf:params:xml:ns:dmarc-2.0" || f.Version != "1.0" {
		t.Errorf("namespace %q version %q", f.XMLName.Space, f.Version)
	}
	if m := f.Metadata; m.OrgName != "Gateway Org" || m.Email != "postmaster@gateway.example" ||
		m.DateRange.Begin != 1777852800 || m.DateRange.End != 1777939199 || m.Generator != "Sluice" {
		t.Errorf("report_metadata %+v", m)
	}
	if pp := f.Published; pp.Domain != "sender.example" || pp.P != "reject" || pp.SP != "reject" || pp.ADKIM != "s" || pp.ASPF != "r" {
		t.Errorf("policy_published %+v", pp)
	}
	rows := map[string]string{}
	for _, rec := range f.Records {
		ev := rec.Row.Evaluated
		var reasons []string
		for _, r := range ev.Reasons {
			reasons = append(reasons, r.Type)
		}
		spf := "nospf"
		if s := rec.AuthResults.SPF; s != nil {
			spf = s.Result
		}
		rows[rec.Row.SourceIP] = strings.Join([]string{itoa(rec.Row.Count), ev.Disposition, ev.DKIM, ev.SPF,
			spf, rec.Identifiers.EnvelopeFrom, "reason=" + strings.Join(reasons, ",")}, " ")
	}
	want := map[string]string{
		"192.0.2.1":   "3 none pass pass pass sender.example reason=",
		"2001:db8::7": "2 reject fail fail fail spoof.example reason=",
		// p=reject, but quarantined: our decision, with the reason.
		"198.51.100.9": "1 quarantine fail fail fail spoof.example reason=local_policy",
		"203.0.113.5":  "1 none fail fail fail spoof.example reason=policy_test_mode",
		"203.0.113.6":  "1 quarantine fail fail fail spoof.example reason=other",
		"203.0.113.7":  "1 reject fail fail nospf  reason=",
	}
	if len(rows) != len(want) {
		t.Errorf("rows %v, want %v", rows, want)
	}
	for ip, w := range want {
		if rows[ip] != w {
			t.Errorf("row %s = %q, want %q", ip, rows[ip], w)
		}
	}
	// Sent and gone: a second SendDue sends nothing again.
	if err := e.r.SendDue(t.Context(), next.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := len(e.q.list()); n != 3 {
		t.Errorf("%d reports after a second SendDue, want still 3", n)
	}
	if entries, _ := os.ReadDir(e.dir); len(entries) != 0 {
		t.Errorf("left in the reports directory: %v", entries)
	}
}

// unfold is a field's value with each run of white space one space, as
// the Subject's ABNF (FWS) reads it.
func unfold(s string) string { return strings.Join(strings.Fields(s), " ") }

func itoa(n int) string { return strconv.Itoa(n) }

// An external rua is sent to only when its domain says it takes reports
// for the policy domain: the same records, with the verification record
// for reports.example present (above) and absent here.
func TestDMARCExternalDestinationNotVerified(t *testing.T) {
	e := newEnv(t, true, false)
	e.r.DMARC(pass("192.0.2.1", "sender.example"))
	next := time.Date(2026, 5, 5, 0, 1, 0, 0, time.UTC)
	e.clock.Set(next)
	res := e.r.cfg.Resolver()
	ok, _, err := dmarc.ReportAuthorized(t.Context(), res, dmarc.TreeWalk, "sender.example", "unverified.example")
	if err != nil || ok {
		t.Fatalf("unverified.example authorized: %v %v", ok, err)
	}
	ok, _, err = dmarc.ReportAuthorized(t.Context(), res, dmarc.TreeWalk, "sender.example", "reports.example")
	if err != nil || !ok {
		t.Fatalf("reports.example not authorized: %v %v", ok, err)
	}
	ok, _, err = dmarc.ReportAuthorized(t.Context(), res, dmarc.TreeWalk, "sender.example", "sneaky.example")
	if err != nil || ok {
		t.Fatalf("sneaky.example, whose record sends reports elsewhere, authorized: %v %v", ok, err)
	}
	ok, _, err = dmarc.ReportAuthorized(t.Context(), res, dmarc.TreeWalk, "mail.sender.example", "sender.example")
	if err != nil || !ok {
		t.Fatalf("the same organization needs no verification: %v %v", ok, err)
	}
	if err := e.r.SendDue(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	for _, m := range e.q.list() {
		if d := m.Domain(); d != "sender.example" && d != "reports.example" && d != "redirect.example" {
			t.Errorf("a report went to %s", d)
		}
	}
}

func TestNothingWhenOff(t *testing.T) {
	e := newEnv(t, false, false)
	e.r.DMARC(pass("192.0.2.1", "sender.example"))
	e.r.TLS(TLSRecord{Domain: "dest.example", Type: "no-policy-found", Host: "mx.dest.example", Result: "ok"})
	next := time.Date(2026, 5, 5, 0, 1, 0, 0, time.UTC)
	e.clock.Set(next)
	if err := e.r.SendDue(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if n := len(e.q.list()); n != 0 {
		t.Errorf("%d reports sent with reports off", n)
	}
	if entries, _ := os.ReadDir(e.dir); len(entries) != 0 {
		t.Errorf("records kept with reports off: %v", entries)
	}
	var nilReports *Reports
	nilReports.DMARC(pass("192.0.2.1", "sender.example")) // a nil *Reports records nothing
}

func TestTLSReport(t *testing.T) {
	e := newEnv(t, false, true)
	sts := []string{"version: STSv1", "mode: enforce", "mx: mx.dest.example", "max_age: 86400"}
	ok := TLSRecord{Domain: "dest.example", Type: "sts", Policy: sts, MX: []string{"mx.dest.example"}, Host: "mx.dest.example", IP: "127.0.0.2", Result: "ok"}
	bad := ok
	bad.Result, bad.IP = "certificate-not-trusted", "127.0.0.3"
	e.r.TLS(ok)
	e.r.TLS(ok)
	e.r.TLS(bad)
	e.r.TLS(TLSRecord{Domain: "other.example", Type: "no-policy-found", Host: "mx.other.example", Result: "ok"})
	next := time.Date(2026, 5, 5, 0, 1, 0, 0, time.UTC)
	e.clock.Set(next)
	if err := e.r.SendDue(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	got := e.q.list()
	if len(got) != 1 || got[0].Domain() != "dest.example" || got[0].Recipients[0].To != "tls@dest.example" {
		t.Fatalf("queued %d reports, want one to tls@dest.example: %+v", len(got), got)
	}
	if !got[0].TLSReport || got[0].Kind != queue.Report {
		t.Errorf("queued as kind %s, TLSReport %v: want a report delivered despite TLS failures", got[0].Kind, got[0].TLSReport)
	}
	if r := dkimpy.Check(t, got[0].Data, e.keys); len(r.DKIM) != 1 || !r.DKIM[0] {
		t.Errorf("dkimpy: the report's signature does not verify: %+v", r)
	}
	p := reportcheck.Parse(t, got[0].Data)
	id := "20260504.dest.example@mx.gateway.example"
	// The Submitter is the domain of contact-info and From
	// (postmaster@gateway.example), not our hostname (RFC 8460 §5.3).
	if h := p.Headers; unfold(h["Subject"]) != "Report Domain: dest.example Submitter: gateway.example Report-ID: <"+id+">" ||
		h["TLS-Report-Domain"] != "dest.example" || h["TLS-Report-Submitter"] != "gateway.example" || h["From"] != "postmaster@gateway.example" {
		t.Errorf("header %v", h)
	}
	if p.ContentType != "multipart/report" || p.ReportType != "tlsrpt" || p.AttachmentType != "application/tlsrpt+gzip" ||
		p.Filename != "gateway.example!dest.example!1777852800!1777939199.json.gz" {
		t.Errorf("MIME: %s report-type=%s, attachment %s %q", p.ContentType, p.ReportType, p.AttachmentType, p.Filename)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(p.Attachment), &rep); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"organization-name", "date-range", "contact-info", "report-id", "policies"} {
		if rep[field] == nil {
			t.Errorf("no %q in %s", field, p.Attachment)
		}
	}
	var typed tlsReport
	json.Unmarshal([]byte(p.Attachment), &typed)
	if typed.DateRange.Start != "2026-05-04T00:00:00Z" || typed.DateRange.End != "2026-05-04T23:59:59Z" || typed.ReportID != id ||
		typed.Contact != "postmaster@gateway.example" {
		t.Errorf("date-range %+v report-id %q", typed.DateRange, typed.ReportID)
	}
	if len(typed.Policies) != 1 {
		t.Fatalf("policies: %s", p.Attachment)
	}
	pol := typed.Policies[0]
	if pol.Policy.Type != "sts" || pol.Policy.Domain != "dest.example" || !slices.Equal(pol.Policy.String, sts) ||
		pol.Summary.Successful != 2 || pol.Summary.Failed != 1 ||
		len(pol.Failures) != 1 || pol.Failures[0].ResultType != "certificate-not-trusted" ||
		pol.Failures[0].ReceivingIP != "127.0.0.3" || pol.Failures[0].Count != 1 {
		t.Errorf("policy entry: %s", p.Attachment)
	}
}

// A DNS failure keeps the day: nothing is lost, and the next look tries
// it again.
func TestDNSFailureKeepsTheDay(t *testing.T) {
	e := newEnv(t, true, false)
	e.r.DMARC(pass("192.0.2.1", "sender.example"))
	next := time.Date(2026, 5, 5, 0, 1, 0, 0, time.UTC)
	e.clock.Set(next)
	e.dns.Fail("_dmarc.sender.example.", dns.RcodeServerFailure)
	if err := e.r.SendDue(t.Context(), next); err == nil {
		t.Error("SendDue said nothing of the DNS failure")
	}
	if n := len(e.q.list()); n != 0 {
		t.Fatalf("%d reports sent", n)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "dmarc-2026-05-04.jsonl.due")); err != nil {
		t.Fatalf("the day's records are gone: %v", err)
	}
}
