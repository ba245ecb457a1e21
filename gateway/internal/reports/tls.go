package reports

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// TLSRecord is the result of one outbound TLS session (or of one that
// could not be had) towards a destination domain, as a TLS report
// (RFC 8460) counts it.
type TLSRecord struct {
	Domain string `json:"domain"` // the policy domain: the destination domain
	// Type is the policy the session was under: "sts", "tlsa" or
	// "no-policy-found"; Policy its text (the MTA-STS policy's lines, the
	// TLSA records), MX the MTA-STS policy's mx patterns.
	Type   string   `json:"type"`
	Policy []string `json:"policy,omitempty"`
	MX     []string `json:"mx,omitempty"`
	Host   string   `json:"host"`         // the MX host
	IP     string   `json:"ip,omitempty"` // the receiving IP; "" when none was reached
	// Result is "ok" for a session with the TLS its policy asks for, or
	// the result type of RFC 8460 §4.3 saying what failed.
	Result string `json:"result"`
	// Reason is a failure-reason-code: ours, where RFC 8460 has no
	// result type for what failed.
	Reason string `json:"reason,omitempty"`
}

// TLS records one session's TLS result, if TLS reports are on. It never
// waits: a record that finds the buffer full is dropped.
func (r *Reports) TLS(rec TLSRecord) {
	if r == nil || !r.cfg.TLS || rec.Domain == "" {
		return
	}
	r.record(KindTLS, &rec)
}

// TLSOn reports whether TLS records are wanted.
func (r *Reports) TLSOn() bool { return r != nil && r.cfg.TLS }

// tlsReport is a TLS report (RFC 8460 §4.4).
type tlsReport struct {
	Organization string       `json:"organization-name"`
	DateRange    tlsDateRange `json:"date-range"`
	Contact      string       `json:"contact-info"`
	ReportID     string       `json:"report-id"`
	Policies     []tlsPolicy  `json:"policies"`
}

type tlsDateRange struct {
	Start string `json:"start-datetime"`
	End   string `json:"end-datetime"`
}

type tlsPolicy struct {
	Policy   tlsPolicyDesc      `json:"policy"`
	Summary  tlsSummary         `json:"summary"`
	Failures []tlsFailureDetail `json:"failure-details,omitempty"`
}

type tlsPolicyDesc struct {
	Type   string   `json:"policy-type"`
	String []string `json:"policy-string,omitempty"`
	Domain string   `json:"policy-domain"`
	MXHost []string `json:"mx-host,omitempty"`
}

type tlsSummary struct {
	Successful int `json:"total-successful-session-count"`
	Failed     int `json:"total-failure-session-count"`
}

type tlsFailureDetail struct {
	ResultType  string `json:"result-type"`
	ReceivingMX string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP string `json:"receiving-ip,omitempty"`
	Count       int    `json:"failed-session-count"`
	Reason      string `json:"failure-reason-code,omitempty"`
}

// sendTLS sends the TLS reports of one day's records: one per destination
// domain that publishes a TLSRPT record with a mailto: rua.
func (r *Reports) sendTLS(ctx context.Context, path string, d time.Time) error {
	recs, err := readLines[TLSRecord](path)
	if err != nil {
		return err
	}
	byDomain := map[string][]TLSRecord{}
	for _, rec := range recs {
		dom := strings.ToLower(rec.Domain)
		byDomain[dom] = append(byDomain[dom], rec)
	}
	var firstErr error
	for _, dom := range sortedKeys(byDomain) {
		to, err := r.tlsrptDestinations(ctx, dom)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if len(to) == 0 {
			continue
		}
		rep := r.tlsAggregate(dom, byDomain[dom], d)
		doc, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		begin, end := d.Unix(), d.Add(24*time.Hour).Unix()-1
		// RFC 8460 §5.3: the Submitter must be the domain of the
		// report's contact-info (our From), not our hostname; the file
		// name's sender and the Subject say the same.
		_, submitter, _ := strings.Cut(rep.Contact, "@")
		msg := mail{
			to:      to,
			subject: fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", dom, submitter, rep.ReportID),
			id:      rep.ReportID,
			extra:   []string{"TLS-Report-Domain: " + dom, "TLS-Report-Submitter: " + submitter},
			text: fmt.Sprintf("This is an aggregate TLS report (RFC 8460) for %s from %s, covering %s UTC.\r\n",
				dom, r.cfg.OrgName, d.Format("2006-01-02")),
			contentType: `multipart/report; report-type="tlsrpt"`,
			attachment: attachment{
				contentType: "application/tlsrpt+gzip",
				filename:    fmt.Sprintf("%s!%s!%d!%d.json.gz", submitter, dom, begin, end),
				data:        gzipped(doc),
			},
		}
		if err := r.send(ctx, KindTLS, msg); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// tlsrptDestinations are the mailto: addresses of domain's TLSRPT record
// (_smtp._tls.<domain>, RFC 8460 §3); none when there is no record.
func (r *Reports) tlsrptDestinations(ctx context.Context, domain string) ([]string, error) {
	txts, err := r.cfg.Resolver().LookupTXT(ctx, "_smtp._tls."+domain)
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up the TLSRPT record of %s: %w", domain, err)
	}
	var records []string
	for _, txt := range txts {
		if v, _, _ := strings.Cut(txt, ";"); strings.ReplaceAll(v, " ", "") == "v=TLSRPTv1" {
			records = append(records, txt)
		}
	}
	if len(records) != 1 { // §3: several records are as none
		return nil, nil
	}
	var to []string
	for part := range strings.SplitSeq(records[0], ";") {
		name, value, _ := strings.Cut(part, "=")
		if strings.TrimSpace(name) != "rua" {
			continue
		}
		for uri := range strings.SplitSeq(value, ",") {
			if addr, ok := mailtoAddress(uri); ok {
				to = append(to, addr)
			}
		}
	}
	return to, nil
}

// tlsAggregate makes the report of one domain's records of the day that
// starts at d: one policy entry per policy seen, its sessions counted,
// its failures grouped by result, host and IP.
func (r *Reports) tlsAggregate(domain string, recs []TLSRecord, d time.Time) *tlsReport {
	rep := &tlsReport{
		Organization: r.cfg.OrgName,
		DateRange: tlsDateRange{Start: d.UTC().Format(time.RFC3339),
			End: d.Add(24*time.Hour - time.Second).UTC().Format(time.RFC3339)},
		Contact:  r.cfg.From,
		ReportID: reportID(d, domain, r.cfg.Hostname),
	}
	type failureKey struct{ result, host, ip, reason string }
	policies := map[string]*tlsPolicy{}
	failures := map[string]map[failureKey]int{}
	for _, rec := range recs {
		desc := tlsPolicyDesc{Type: rec.Type, String: rec.Policy, Domain: domain, MXHost: rec.MX}
		k, _ := json.Marshal(desc)
		key := string(k)
		p := policies[key]
		if p == nil {
			p = &tlsPolicy{Policy: desc}
			policies[key] = p
			failures[key] = map[failureKey]int{}
		}
		if rec.Result == "ok" {
			p.Summary.Successful++
			continue
		}
		p.Summary.Failed++
		failures[key][failureKey{rec.Result, rec.Host, rec.IP, rec.Reason}]++
	}
	for _, key := range sortedKeys(policies) {
		p := policies[key]
		for f, n := range failures[key] {
			p.Failures = append(p.Failures, tlsFailureDetail{ResultType: f.result, ReceivingMX: f.host,
				ReceivingIP: f.ip, Count: n, Reason: f.reason})
		}
		slices.SortFunc(p.Failures, func(a, b tlsFailureDetail) int {
			return cmp.Or(cmp.Compare(a.ResultType, b.ResultType), cmp.Compare(a.ReceivingMX, b.ReceivingMX), cmp.Compare(a.ReceivingIP, b.ReceivingIP))
		})
		rep.Policies = append(rep.Policies, *p)
	}
	return rep
}
