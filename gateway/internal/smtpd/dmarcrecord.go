package smtpd

import (
	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/auth"
	"github.com/sluice-mail/sluice/gateway/internal/reports"
)

// DMARCRecorder keeps each message's DMARC evaluation for the aggregate
// reports; *reports.Reports is one. It must never wait.
type DMARCRecorder interface {
	DMARCOn() bool // whether records are wanted at all
	DMARC(reports.DMARCRecord)
}

// Dispositions of a message, as an aggregate report names what the
// receiver did with it.
const (
	dispositionNone       = "none"
	dispositionQuarantine = "quarantine"
	dispositionReject     = "reject"
)

// recordDMARC hands the message's DMARC evaluation to the recorder, if
// one is set and the From domain has a DMARC record (pass or fail). It
// is called once the message's fate is settled (refused by us, or
// answered for good by its destination), so that a message the sender
// retries counts once.
func (s *session) recordDMARC(report *auth.Report, disposition string) {
	rec := s.srv.cfg.DMARCReports
	if rec == nil || report == nil || !rec.DMARCOn() {
		return
	}
	d := report.Auth.DMARC
	if d.PolicyDomain == "" || d.Result != "pass" && d.Result != "fail" {
		return
	}
	r := reports.DMARCRecord{
		SourceIP:     s.clientIP.String(),
		HeaderFrom:   d.FromDomain,
		PolicyDomain: d.PolicyDomain,
		Disposition:  disposition,
		Policy:       d.Policy,
		Pct:          int(d.Pct),
		DKIMAligned:  d.DKIMAligned,
		SPFAligned:   d.SPFAligned,
		SPFDomain:    report.Auth.SPF.Domain,
		SPFResult:    report.Auth.SPF.Result,
	}
	if s.txn.from != "" {
		if _, domain, err := address.Split(s.txn.from); err == nil {
			r.EnvelopeFrom = domain
		}
	}
	for _, k := range report.Auth.DKIM {
		r.DKIM = append(r.DKIM, reports.DKIMAuth{Domain: k.Domain, Selector: k.Selector, Result: k.Result})
	}
	rec.DMARC(r)
}
