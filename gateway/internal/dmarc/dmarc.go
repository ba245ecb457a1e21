// Package dmarc finds the DMARC facts of a message: whether SPF or DKIM
// aligns with the RFC5322.From domain, and which policy the domain owner
// asks for. Records and organizational domains are found by RFC 9989's DNS
// tree walk, or, when configured, by RFC 7489's public suffix list (with
// RFC 9091's np). It decides nothing; a plugin does that with the facts.
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
	Result     string // Pass, Fail, None (no usable record), TempError or PermError
	FromDomain string // in A-labels, lower case
	// PolicyDomain is where the record was found: FromDomain, its
	// organizational domain, or (RFC 9989) its public suffix domain.
	PolicyDomain string
	// Record is the record as understood: bad optional tags replaced by
	// their defaults, a bad p= by none (see parseRecord). nil if none.
	// go-msgauth's Record has no np, psd or t; Policy and Pct reflect them.
	Record *dmarc.Record
	// Policy is the one that applies to FromDomain: "none", "quarantine"
	// or "reject" ("" when there is no record).
	Policy string
	// Pct is the share of failing mail Policy is meant for; the rest gets
	// the next milder policy. Under RFC 7489 the record's pct (100 when
	// absent); under RFC 9989 0 for a policy in test mode (t=y, or an old
	// record's pct=0) and 100 otherwise.
	Pct                     int
	SPFAligned, DKIMAligned bool
	Reason                  string // one short sentence for humans
}

// Evaluate checks fromDomain (the RFC5322.From domain, as FromDomain
// returns it) against the authenticated identifiers, using the DMARC record
// found through r the way how says.
func Evaluate(ctx context.Context, r Resolver, how Discovery, fromDomain string, ids Identifiers) Result {
	from, err := address.Domain(strings.TrimSuffix(fromDomain, "."))
	if err != nil {
		return Result{Result: PermError, FromDomain: fromDomain,
			Reason: fmt.Sprintf("the From domain %q is not a domain name: %v", fromDomain, err)}
	}
	res := Result{FromDomain: from}
	e := newEvaluation(ctx, r, how)
	rec, policyDomain, err := e.discover(from)
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
	res.Pct = rec.pct(how)
	policy, err := e.applicablePolicy(rec, from, policyDomain)
	if err != nil {
		res.Result, res.Reason = TempError, err.Error()
		return res
	}
	res.Policy = string(policy)

	// An identifier whose alignment DNS could not tell leaves the result
	// open only if no other one aligns.
	var unknown error
	if ids.SPFResult == Pass {
		res.SPFAligned, unknown = e.aligned(ids.SPFDomain, from, rec.SPFAlignment)
	}
	for _, d := range ids.DKIM {
		if d.Result != Pass {
			continue
		}
		ok, err := e.aligned(d.Domain, from, rec.DKIMAlignment)
		if ok {
			res.DKIMAligned = true
			break
		}
		if unknown == nil {
			unknown = err
		}
	}
	if !res.SPFAligned && !res.DKIMAligned && unknown != nil {
		res.Result, res.Reason = TempError, "cannot tell alignment with "+from+": "+unknown.Error()
		return res
	}
	res.Result, res.Reason = verdict(res, ids)
	return res
}

// noRecord is why no DMARC applies: Evaluate's result is then none.
type noRecord struct{ why string }

func (e noRecord) Error() string { return e.why }

// applicablePolicy picks p for the domain that published the record, sp
// for its subdomains, and np for subdomains that do not exist. Existence
// is only looked up when it changes the answer.
func (e *evaluation) applicablePolicy(rec *record, from, policyDomain string) (dmarc.Policy, error) {
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
	exists, err := e.domainExists(from)
	if err != nil {
		return "", err
	}
	if exists {
		return sp, nil
	}
	return rec.np, nil
}

// aligned reports whether an authenticated domain aligns with the From
// domain: the same name in strict mode, the same organizational domain in
// relaxed mode. An error says DNS could not tell.
func (e *evaluation) aligned(domain, from string, mode dmarc.AlignmentMode) (bool, error) {
	d, err := address.Domain(strings.TrimSuffix(domain, "."))
	if err != nil {
		return false, nil
	}
	if d == from {
		return true, nil
	}
	if mode == dmarc.AlignmentStrict {
		return false, nil
	}
	fromOrg, err := e.orgDomain(from)
	if err != nil {
		return false, err
	}
	// An organizational domain is its domain or a parent of it, so d
	// cannot align unless fromOrg is one of those: no walk for d then.
	if d != fromOrg && !strings.HasSuffix(d, "."+fromOrg) {
		return false, nil
	}
	dOrg, err := e.orgDomain(d)
	if err != nil {
		return false, err
	}
	return dOrg == fromOrg, nil
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
