package reports

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
)

// DMARCRecord is one message's DMARC evaluation, as an aggregate report
// counts it. Only messages whose From domain has a DMARC record (result
// pass or fail) are recorded.
type DMARCRecord struct {
	SourceIP     string `json:"ip"`
	HeaderFrom   string `json:"from"`
	EnvelopeFrom string `json:"mfrom,omitempty"` // the MAIL FROM domain; "" for the null reverse-path
	PolicyDomain string `json:"pd"`
	// Disposition is what we did: none, quarantine or reject; Policy
	// what the domain's record asked for the message (p, sp or np), and
	// Pct the share it asked it for (0 in test mode).
	Disposition string     `json:"disp"`
	Policy      string     `json:"policy,omitempty"`
	Pct         int        `json:"pct,omitempty"`
	DKIMAligned bool       `json:"dkim"`
	SPFAligned  bool       `json:"spf"`
	DKIM        []DKIMAuth `json:"sigs,omitempty"`
	SPFDomain   string     `json:"spfd,omitempty"`
	SPFResult   string     `json:"spfr,omitempty"`
}

// DKIMAuth is one DKIM signature's result.
type DKIMAuth struct {
	Domain   string `json:"d"`
	Selector string `json:"s"`
	Result   string `json:"r"`
}

// DMARC records one message's evaluation, if DMARC reports are on. It
// never waits: a record that finds the buffer full is dropped.
func (r *Reports) DMARC(rec DMARCRecord) {
	if r == nil || !r.cfg.DMARC || rec.PolicyDomain == "" {
		return
	}
	r.record(KindDMARC, &rec)
}

// DMARCOn reports whether DMARC records are wanted, so that a caller can
// skip making one.
func (r *Reports) DMARCOn() bool { return r != nil && r.cfg.DMARC }

// sendDMARC sends the aggregate reports of one day's records: one per
// policy domain whose record asks for them.
func (r *Reports) sendDMARC(ctx context.Context, path string, d time.Time) error {
	recs, err := readLines[DMARCRecord](path)
	if err != nil {
		return err
	}
	byDomain := map[string][]DMARCRecord{}
	for _, rec := range recs {
		pd := strings.ToLower(rec.PolicyDomain)
		byDomain[pd] = append(byDomain[pd], rec)
	}
	res := r.cfg.Resolver()
	var firstErr error
	for _, pd := range sortedKeys(byDomain) {
		pub, err := dmarc.LookupPublished(ctx, res, r.cfg.Discovery, pd)
		if errors.Is(err, dmarc.ErrNoRecord) {
			r.cfg.Logger.Info("reports: no DMARC report for a domain without a record now", "domain", pd, "err", err)
			continue
		}
		if err != nil { // DNS failed: the day is tried again
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		to, err := r.dmarcDestinations(ctx, res, pub)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if len(to) == 0 {
			continue
		}
		rep := r.aggregate(pub, byDomain[pd], d)
		doc, err := xml.MarshalIndent(rep, "", " ")
		if err != nil {
			return err
		}
		doc = append([]byte(xml.Header), doc...)
		begin, end := d.Unix(), d.Add(24*time.Hour).Unix()-1
		att := attachment{
			contentType: "application/gzip",
			filename:    fmt.Sprintf("%s!%s!%d!%d.xml.gz", r.cfg.Hostname, pd, begin, end),
			data:        gzipped(doc),
		}
		msg := mail{
			to:      to,
			subject: fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", pd, r.cfg.Hostname, rep.Metadata.ReportID),
			id:      rep.Metadata.ReportID,
			text: fmt.Sprintf("This is a DMARC aggregate report (RFC 9990) for %s from %s, covering %s UTC.\r\n",
				pd, r.cfg.OrgName, d.Format("2006-01-02")),
			attachment:  att,
			contentType: "multipart/mixed",
		}
		if err := r.send(ctx, KindDMARC, msg); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// dmarcDestinations are the mailto: addresses of pub's rua that may get
// its reports: those at the policy domain's organization, and those at
// another whose DNS says it takes them (RFC 9990 §4), replaced by the
// addresses that DNS record names if it names some. A size limit
// ("!10m", RFC 7489 §6.4) is dropped: a day's report of one domain is
// far below any limit a receiver would set, and the limit is not part of
// RFC 9989's rua.
func (r *Reports) dmarcDestinations(ctx context.Context, res dmarc.Resolver, pub *dmarc.Published) ([]string, error) {
	var to []string
	var firstErr error
	for _, uri := range pub.RUA {
		addr, ok := mailtoAddress(uri)
		if !ok {
			continue
		}
		_, domain, _ := strings.Cut(addr, "@")
		ok, override, err := dmarc.ReportAuthorized(ctx, res, r.cfg.Discovery, pub.Domain, domain)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("verifying %s for %s: %w", addr, pub.Domain, err)
			}
			continue
		}
		if !ok {
			r.cfg.Logger.Info("reports: rua at another domain that does not take reports for this one; skipped",
				"domain", pub.Domain, "rua", addr)
			continue
		}
		if len(override) == 0 {
			override = []string{uri}
		}
		for _, o := range override {
			if addr, ok := mailtoAddress(o); ok && !slices.Contains(to, addr) {
				to = append(to, addr)
			}
		}
	}
	return to, firstErr
}

// feedback is an aggregate report (RFC 9990 Appendix A).
type feedback struct {
	XMLName   xml.Name  `xml:"urn:ietf:params:xml:ns:dmarc-2.0 feedback"`
	Version   string    `xml:"version"`
	Metadata  metadata  `xml:"report_metadata"`
	Published published `xml:"policy_published"`
	Records   []record  `xml:"record"`
}

type metadata struct {
	OrgName   string    `xml:"org_name"`
	Email     string    `xml:"email"`
	ReportID  string    `xml:"report_id"`
	DateRange dateRange `xml:"date_range"`
	Generator string    `xml:"generator"`
}

type dateRange struct {
	Begin int64 `xml:"begin"`
	End   int64 `xml:"end"`
}

type published struct {
	Domain    string `xml:"domain"`
	Discovery string `xml:"discovery_method"`
	ADKIM     string `xml:"adkim"`
	ASPF      string `xml:"aspf"`
	P         string `xml:"p"`
	SP        string `xml:"sp"`
	NP        string `xml:"np,omitempty"`
	Testing   string `xml:"testing"`
	FO        string `xml:"fo,omitempty"`
}

type record struct {
	Row         row         `xml:"row"`
	Identifiers identifiers `xml:"identifiers"`
	AuthResults authResults `xml:"auth_results"`
}

type row struct {
	SourceIP  string    `xml:"source_ip"`
	Count     int       `xml:"count"`
	Evaluated evaluated `xml:"policy_evaluated"`
}

type evaluated struct {
	Disposition string   `xml:"disposition"`
	DKIM        string   `xml:"dkim"`
	SPF         string   `xml:"spf"`
	Reasons     []reason `xml:"reason"`
}

type reason struct {
	Type    string `xml:"type"`
	Comment string `xml:"comment,omitempty"`
}

type identifiers struct {
	EnvelopeFrom string `xml:"envelope_from"`
	HeaderFrom   string `xml:"header_from"`
}

type authResults struct {
	DKIM []dkimResult `xml:"dkim"`
	SPF  *spfResult   `xml:"spf"` // none when no domain was checked
}

type dkimResult struct {
	Domain   string `xml:"domain"`
	Selector string `xml:"selector"`
	Result   string `xml:"result"`
}

type spfResult struct {
	Domain string `xml:"domain"`
	Scope  string `xml:"scope"`
	Result string `xml:"result"`
}

// aggregate makes the report of one policy domain's records of the day
// that starts at d: one <record> per distinct source, identifiers and
// results, with their count.
func (r *Reports) aggregate(pub *dmarc.Published, recs []DMARCRecord, d time.Time) *feedback {
	f := &feedback{
		Version: "1.0",
		Metadata: metadata{
			OrgName:   r.cfg.OrgName,
			Email:     r.cfg.From,
			ReportID:  reportID(d, pub.Domain, r.cfg.Hostname),
			DateRange: dateRange{Begin: d.Unix(), End: d.Add(24*time.Hour).Unix() - 1},
			Generator: "Sluice",
		},
		Published: published{Domain: pub.Domain, Discovery: "treewalk", ADKIM: pub.ADKIM, ASPF: pub.ASPF,
			P: pub.P, SP: pub.SP, NP: pub.NP, Testing: "n", FO: pub.FO},
	}
	if pub.Discovery == dmarc.PublicSuffix {
		f.Published.Discovery = "psl"
	}
	if pub.Testing {
		f.Published.Testing = "y"
	}
	counts := map[string]int{}
	first := map[string]DMARCRecord{}
	for _, rec := range recs {
		key, _ := json.Marshal(rec) // every field sets a row apart
		counts[string(key)]++
		first[string(key)] = rec
	}
	for _, key := range sortedKeys(counts) {
		rec := first[key]
		out := record{
			Row: row{SourceIP: rec.SourceIP, Count: counts[key], Evaluated: evaluated{
				Disposition: rec.Disposition, DKIM: passFail(rec.DKIMAligned), SPF: passFail(rec.SPFAligned)}},
			Identifiers: identifiers{EnvelopeFrom: rec.EnvelopeFrom, HeaderFrom: rec.HeaderFrom},
		}
		if rec.SPFDomain != "" {
			out.AuthResults.SPF = &spfResult{Domain: rec.SPFDomain, Scope: "mfrom", Result: spfWord(rec.SPFResult)}
		}
		out.Row.Evaluated.Reasons = overrideReason(rec)
		for _, s := range rec.DKIM {
			out.AuthResults.DKIM = append(out.AuthResults.DKIM, dkimResult{Domain: s.Domain, Selector: s.Selector, Result: dkimWord(s.Result)})
		}
		f.Records = append(f.Records, out)
	}
	return f
}

// overrideReason says why a message that failed DMARC got another
// disposition than its policy, which RFC 9990 §3.1.1 requires: the
// policy's test mode ("policy_test_mode": t=y, or pct=0 under RFC 7489),
// an RFC 7489 record's sampling ("other": RFC 9990 has no word for it
// since RFC 9989 made pct historic), else our decision ("local_policy": a
// plugin's, such as the dmarc plugin trusting an ARC sealer, or the
// score's).
func overrideReason(rec DMARCRecord) []reason {
	if rec.DKIMAligned || rec.SPFAligned || rec.Policy == "" || rec.Disposition == rec.Policy {
		return nil
	}
	switch {
	case rec.Pct == 0:
		return []reason{{Type: "policy_test_mode"}}
	case rec.Pct < 100:
		return []reason{{Type: "other", Comment: fmt.Sprintf("sampled out: policy %s for %d%% of failing mail (pct)", rec.Policy, rec.Pct)}}
	}
	return []reason{{Type: "local_policy"}}
}

// reportID names the report of one domain and day: the same each time
// it is made, so that a report sent again is known as the same one.
func reportID(d time.Time, domain, hostname string) string {
	return d.Format("20060102") + "." + domain + "@" + hostname
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}

// spfWord and dkimWord keep a result within the schema's words.
func spfWord(s string) string {
	switch s {
	case "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror":
		return s
	case "":
		return "none"
	}
	return "permerror"
}

func dkimWord(s string) string {
	switch s {
	case "none", "pass", "fail", "policy", "neutral", "temperror", "permerror":
		return s
	}
	return "permerror"
}

// mailtoAddress is the address of a mailto: URI, without a size limit
// ("!10m") or header fields ("?subject=..."); false for other schemes.
func mailtoAddress(uri string) (string, bool) {
	uri = strings.TrimSpace(uri)
	if len(uri) < 7 || !strings.EqualFold(uri[:7], "mailto:") {
		return "", false
	}
	addr := uri[7:]
	if i := strings.IndexAny(addr, "!?"); i >= 0 {
		addr = addr[:i]
	}
	if unq, err := url.PathUnescape(addr); err == nil {
		addr = unq
	}
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(addr, " ,;<>") {
		return "", false
	}
	return local + "@" + strings.ToLower(domain), true
}
