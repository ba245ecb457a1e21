package dmarc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Published is a domain's DMARC record as an aggregate report shows it
// (RFC 9990 policy_published), with where reports go.
type Published struct {
	Domain    string // where the record is
	P, SP, NP string // SP is P when absent; NP "" when absent
	ADKIM     string // "r" or "s"
	ASPF      string
	Testing   bool   // t=y
	FO        string // as written; "" when absent
	RUA       []string
	Discovery Discovery // how the record was found
}

// ErrNoRecord is LookupPublished's error for a domain without one usable
// DMARC record.
var ErrNoRecord = errors.New("no usable DMARC record")

// LookupPublished reads the DMARC record at _dmarc.<domain> for a report:
// the record an evaluation found there, read again when the report is
// made. The error wraps ErrNoRecord when there is none; any other says
// DNS failed.
func LookupPublished(ctx context.Context, r Resolver, how Discovery, domain string) (*Published, error) {
	e := newEvaluation(ctx, r, how)
	l := e.lookup(domain)
	switch {
	case l.err != nil:
		return nil, l.err
	case !l.one():
		return nil, fmt.Errorf("%w: _dmarc.%s has %d DMARC records", ErrNoRecord, domain, l.records)
	case l.unusable != nil:
		return nil, fmt.Errorf("%w: %v", ErrNoRecord, l.unusable)
	}
	rec := l.rec
	p := &Published{Domain: domain, P: string(rec.Policy), SP: string(rec.SubdomainPolicy), NP: string(rec.np),
		ADKIM: string(rec.DKIMAlignment), ASPF: string(rec.SPFAlignment), Testing: rec.testing, Discovery: how}
	if p.SP == "" {
		p.SP = p.P
	}
	if p.ADKIM == "" {
		p.ADKIM = "r"
	}
	if p.ASPF == "" {
		p.ASPF = "r"
	}
	// rua and fo as written: go-msgauth keeps fo as flags, and drops a
	// size limit of a rua URI (RFC 7489 §6.4), which the report honours.
	txts, _ := r.LookupTXT(ctx, "_dmarc."+domain)
	for _, txt := range txts {
		if !isDMARC1(txt) {
			continue
		}
		for _, t := range splitTags(txt) {
			switch t.name {
			case "fo":
				p.FO = t.value
			case "rua":
				for u := range strings.SplitSeq(t.value, ",") {
					if u = strings.TrimSpace(u); u != "" {
						p.RUA = append(p.RUA, u)
					}
				}
			}
		}
	}
	return p, nil
}

// ReportAuthorized reports whether the domain of a rua URI may be sent
// reports for policyDomain (RFC 9990 §4, verifying external
// destinations): it may when both have the same organizational domain,
// or when <policyDomain>._report._dmarc.<ruaDomain> holds a TXT record
// starting v=DMARC1. That record's own rua, if any, replaces the URI
// (override: the report goes there instead), but only with URIs at
// ruaDomain: one elsewhere forbids both. An error says DNS could not
// tell.
func ReportAuthorized(ctx context.Context, r Resolver, how Discovery, policyDomain, ruaDomain string) (ok bool, override []string, err error) {
	e := newEvaluation(ctx, r, how)
	po, err := e.orgDomain(policyDomain)
	if err != nil {
		return false, nil, err
	}
	ro, err := e.orgDomain(ruaDomain)
	if err != nil {
		return false, nil, err
	}
	if po == ro {
		return true, nil, nil
	}
	name := policyDomain + "._report._dmarc." + ruaDomain
	if len(name) > 253 {
		return false, nil, nil
	}
	txts, err := r.LookupTXT(ctx, name)
	if err != nil {
		if isNotFound(err) {
			return false, nil, nil
		}
		return false, nil, err
	}
	for _, txt := range txts {
		if !isDMARC1(txt) {
			continue
		}
		ok = true
		for _, t := range splitTags(txt) {
			if t.name != "rua" {
				continue
			}
			for u := range strings.SplitSeq(t.value, ",") {
				u = strings.TrimSpace(u)
				_, host, _ := strings.Cut(sizeLimit.ReplaceAllString(u, ""), "@")
				if host != "" && !strings.EqualFold(strings.TrimSuffix(host, "."), ruaDomain) {
					return false, nil, nil
				}
				if u != "" {
					override = append(override, u)
				}
			}
		}
	}
	return ok, override, nil
}

func isNotFound(err error) bool {
	dnsErr, ok := errors.AsType[*net.DNSError](err)
	return ok && dnsErr.IsNotFound
}
