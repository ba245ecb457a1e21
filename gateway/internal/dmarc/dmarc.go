// Package dmarc finds the DMARC facts of a message (RFC 7489, with the np
// tag of RFC 9091): whether SPF or DKIM aligns with the RFC5322.From domain,
// and which policy the domain owner asks for. It decides nothing; a plugin
// does that with the facts.
package dmarc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/sluice-mail/sluice/gateway/internal/address"
)

// Resolver is the DNS Evaluate needs; *resolver.Resolver satisfies it.
// Errors are *net.DNSError, IsNotFound meaning NXDOMAIN; a name without
// records of the asked type is an empty answer.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
}

// Identifiers are the authenticated domains DMARC checks against the From
// domain.
type Identifiers struct {
	SPFResult string // the SPF result for MAIL FROM: pass, fail, ...
	SPFDomain string // the domain SPF checked
	DKIM      []DKIMResult
}

// DKIMResult is the verification of one DKIM signature.
type DKIMResult struct {
	Result string // pass, fail, ...; only pass counts
	Domain string // the signature's d=
}

// Result words, as in RFC 8601 Authentication-Results.
const (
	Pass      = "pass"
	Fail      = "fail"
	None      = "none"
	TempError = "temperror"
	PermError = "permerror"
)

// Result is what Evaluate found.
type Result struct {
	Result       string // Pass, Fail, None (no usable record), TempError or PermError
	FromDomain   string // in A-labels, lower case
	PolicyDomain string // where the record was found: FromDomain or its organisational domain
	// Record is the record as understood: bad optional tags replaced by
	// their defaults, a bad p= by none (see parseRecord). nil if none.
	// go-msgauth's Record has no np; Policy reflects it.
	Record *dmarc.Record
	// Policy is the one that applies to FromDomain: "none", "quarantine"
	// or "reject" ("" when there is no record).
	Policy                  string
	Pct                     int // 0 to 100; 100 when the record has no pct
	SPFAligned, DKIMAligned bool
	Reason                  string // one short sentence for humans
}

// Evaluate checks fromDomain (the RFC5322.From domain, as FromDomain
// returns it) against the authenticated identifiers, using the DMARC record
// found through r.
func Evaluate(ctx context.Context, r Resolver, fromDomain string, ids Identifiers) Result {
	from, err := address.Domain(strings.TrimSuffix(fromDomain, "."))
	if err != nil {
		return Result{Result: PermError, FromDomain: fromDomain,
			Reason: fmt.Sprintf("the From domain %q is not a domain name: %v", fromDomain, err)}
	}
	res := Result{FromDomain: from}
	org := OrganizationalDomain(from)
	rec, policyDomain, err := discover(ctx, r, from, org)
	if err != nil {
		var none noRecord
		if errors.As(err, &none) {
			res.Result, res.Reason = None, err.Error()
		} else {
			res.Result, res.Reason = TempError, err.Error()
		}
		return res
	}
	res.PolicyDomain = policyDomain
	res.Record = rec.Record
	res.Pct = 100
	if rec.Percent != nil {
		res.Pct = *rec.Percent
	}
	policy, err := applicablePolicy(ctx, r, rec, from, policyDomain)
	if err != nil {
		res.Result, res.Reason = TempError, err.Error()
		return res
	}
	res.Policy = string(policy)

	res.SPFAligned = ids.SPFResult == Pass && aligned(ids.SPFDomain, from, rec.SPFAlignment)
	for _, d := range ids.DKIM {
		if d.Result == Pass && aligned(d.Domain, from, rec.DKIMAlignment) {
			res.DKIMAligned = true
			break
		}
	}
	res.Result, res.Reason = verdict(res, ids)
	return res
}

// noRecord is why no DMARC applies: Evaluate's result is then none.
type noRecord struct{ why string }

func (e noRecord) Error() string { return e.why }

// discover finds the record that applies to from (RFC 7489 §6.6.3): at
// _dmarc.<from>, or else at _dmarc.<org>. It returns a noRecord error when
// DMARC does not apply, any other error when DNS failed.
func discover(ctx context.Context, r Resolver, from, org string) (*record, string, error) {
	rec, found, err := lookupRecord(ctx, r, from)
	if err != nil || found {
		return rec, from, err
	}
	if org == from {
		return nil, "", noRecord{"no DMARC record for " + from}
	}
	rec, found, err = lookupRecord(ctx, r, org)
	if err != nil || found {
		return rec, org, err
	}
	return nil, "", noRecord{fmt.Sprintf("no DMARC record for %s or its organisational domain %s", from, org)}
}

// lookupRecord reads the record at _dmarc.<domain>. found is false when
// there is none, so that discovery goes on; several records, or one that is
// unusable, end discovery with a noRecord error.
func lookupRecord(ctx context.Context, r Resolver, domain string) (rec *record, found bool, err error) {
	name := "_dmarc." + domain
	txts, err := r.LookupTXT(ctx, name)
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("the DNS lookup of %s failed: %v", name, err)
	}
	var records []string
	for _, txt := range txts {
		if isDMARC1(txt) {
			records = append(records, txt)
		}
	}
	switch len(records) {
	case 0:
		return nil, false, nil
	case 1:
	default:
		return nil, false, noRecord{fmt.Sprintf("%s has %d DMARC records, so none applies", name, len(records))}
	}
	rec, err = parseRecord(records[0])
	if err != nil {
		return nil, false, noRecord{fmt.Sprintf("the DMARC record at %s is unusable: %v", name, err)}
	}
	return rec, true, nil
}

// applicablePolicy picks p for the domain that published the record, sp
// for its subdomains, and np (RFC 9091) for subdomains that do not exist.
// Existence is only looked up when it changes the answer.
func applicablePolicy(ctx context.Context, r Resolver, rec *record, from, policyDomain string) (dmarc.Policy, error) {
	if policyDomain == from {
		return rec.Policy, nil
	}
	sp := rec.SubdomainPolicy
	if sp == "" {
		sp = rec.Policy
	}
	if rec.np == "" || rec.np == sp {
		return sp, nil
	}
	exists, err := domainExists(ctx, r, from)
	if err != nil {
		return "", err
	}
	if exists {
		return sp, nil
	}
	return rec.np, nil
}

// domainExists follows RFC 9091 §2.1: a domain does not exist when A, AAAA
// and MX queries all answer NXDOMAIN.
func domainExists(ctx context.Context, r Resolver, domain string) (bool, error) {
	lookups := []func() error{
		func() error { _, err := r.LookupNetIP(ctx, "ip4", domain); return err },
		func() error { _, err := r.LookupNetIP(ctx, "ip6", domain); return err },
		func() error { _, err := r.LookupMX(ctx, domain); return err },
	}
	for _, lookup := range lookups {
		err := lookup()
		if err == nil {
			return true, nil
		}
		if dnsErr, ok := errors.AsType[*net.DNSError](err); !ok || !dnsErr.IsNotFound {
			return false, fmt.Errorf("cannot tell whether %s exists: %v", domain, err)
		}
	}
	return false, nil
}

// aligned reports whether an authenticated domain aligns with the From
// domain: the same name in strict mode, the same organisational domain in
// relaxed mode (RFC 7489 §3.1).
func aligned(domain, from string, mode dmarc.AlignmentMode) bool {
	d, err := address.Domain(strings.TrimSuffix(domain, "."))
	if err != nil {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return d == from
	}
	return OrganizationalDomain(d) == OrganizationalDomain(from)
}

// verdict is pass when either identifier aligns, with the reason.
func verdict(res Result, ids Identifiers) (result, reason string) {
	spf, dkim := describeSPF(ids), describeDKIM(ids)
	switch {
	case res.SPFAligned && res.DKIMAligned:
		return Pass, fmt.Sprintf("SPF (%s) and DKIM (%s) align with %s", spf, dkim, res.FromDomain)
	case res.SPFAligned:
		return Pass, fmt.Sprintf("SPF (%s) aligns with %s", spf, res.FromDomain)
	case res.DKIMAligned:
		return Pass, fmt.Sprintf("DKIM (%s) aligns with %s", dkim, res.FromDomain)
	}
	return Fail, fmt.Sprintf("neither SPF (%s) nor DKIM (%s) aligns with %s", spf, dkim, res.FromDomain)
}

// describeSPF names the SPF domain, with the result unless it passed.
func describeSPF(ids Identifiers) string {
	switch {
	case ids.SPFResult == "" && ids.SPFDomain == "":
		return "not checked"
	case ids.SPFResult == Pass:
		return ids.SPFDomain
	case ids.SPFDomain == "":
		return ids.SPFResult
	}
	return ids.SPFDomain + " " + ids.SPFResult
}

// describeDKIM lists the domains of the passing signatures.
func describeDKIM(ids Identifiers) string {
	var domains []string
	for _, d := range ids.DKIM {
		if d.Result == Pass {
			domains = append(domains, d.Domain)
		}
	}
	if len(domains) == 0 {
		return "none"
	}
	return strings.Join(domains, ", ")
}
