package dmarc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Discovery is how Evaluate finds the DMARC record that applies to a
// message and the organizational domains that relaxed alignment compares.
type Discovery int

const (
	// TreeWalk is RFC 9989 §4.10: DMARC records are looked for up the DNS
	// tree, at most eight names, and the psd tag marks public suffix
	// domains. The default.
	TreeWalk Discovery = iota
	// PublicSuffix is RFC 7489 §3.2 and §6.6.3, with RFC 9091's np: the
	// From domain's record, else its organizational domain's, the public
	// suffix plus one label.
	PublicSuffix
)

// ParseDiscovery reads the [auth] dmarc_discovery setting: "rfc9989" (the
// default, also for "") or "rfc7489".
func ParseDiscovery(s string) (Discovery, error) {
	switch s {
	case "", "rfc9989":
		return TreeWalk, nil
	case "rfc7489":
		return PublicSuffix, nil
	}
	return 0, fmt.Errorf("%q is neither \"rfc9989\" nor \"rfc7489\"", s)
}

// String is the setting's name for d.
func (d Discovery) String() string {
	if d == PublicSuffix {
		return "rfc7489"
	}
	return "rfc9989"
}

// maxWalk is how many names a DNS tree walk asks at most (RFC 9989 §4.10),
// so that a From domain of many labels cannot make a receiver flood the DNS.
const maxWalk = 8

// evaluation is the state of one Evaluate: the DMARC lookups made so far,
// so that the walks for the From domain and for the authenticated domains,
// which share their upper names, ask for each name once.
type evaluation struct {
	ctx   context.Context
	r     Resolver
	how   Discovery
	found map[string]*lookup // by domain
}

func newEvaluation(ctx context.Context, r Resolver, how Discovery) *evaluation {
	return &evaluation{ctx: ctx, r: r, how: how, found: map[string]*lookup{}}
}

// lookup is what _dmarc.<domain> holds.
type lookup struct {
	domain  string
	records int // DMARC records there (TXT records starting with v=DMARC1)
	// Of a single record: its psd tag ('y', 'n' or 'u') and the record as
	// understood, or why it is unusable.
	psd      byte
	rec      *record
	unusable error
	err      error // the lookup failed; nothing else is set
}

// one reports whether the name holds exactly one DMARC record, which is
// all that counts: several are discarded (RFC 9989 §4.10 steps 2 and 6).
func (l *lookup) one() bool { return l.records == 1 }

// lookup reads the DMARC records at _dmarc.<domain>, once per evaluation.
func (e *evaluation) lookup(domain string) *lookup {
	if l, ok := e.found[domain]; ok {
		return l
	}
	l := &lookup{domain: domain}
	e.found[domain] = l
	name := "_dmarc." + domain
	txts, err := e.r.LookupTXT(e.ctx, name)
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
		return l
	}
	if err != nil {
		l.err = fmt.Errorf("the DNS lookup of %s failed: %v", name, err)
		return l
	}
	var records []string
	for _, txt := range txts {
		if isDMARC1(txt) {
			records = append(records, txt)
		}
	}
	l.records = len(records)
	if l.one() {
		l.psd = psdOf(records[0])
		l.rec, l.unusable = parseRecord(records[0], e.how)
	}
	return l
}

// use is the record l holds for discovery, or a noRecord error saying why
// it cannot be used.
func (l *lookup) use() (*record, string, error) {
	if l.unusable != nil {
		return nil, "", noRecord{fmt.Sprintf("the DMARC record at _dmarc.%s is unusable: %v", l.domain, l.unusable)}
	}
	return l.rec, l.domain, nil
}

// discover finds the record that applies to from and where it is. It
// returns a noRecord error when DMARC does not apply, any other error when
// DNS failed.
func (e *evaluation) discover(from string) (*record, string, error) {
	if e.how == PublicSuffix {
		return e.discoverByPublicSuffix(from)
	}
	return e.discoverByTreeWalk(from)
}

// discoverByTreeWalk follows RFC 9989 §4.10.1: the From domain's own
// record, else its organizational domain's, else its public suffix
// domain's (a record with psd=y). The walk that finds the organizational
// domain is only made when the From domain has no record of its own.
func (e *evaluation) discoverByTreeWalk(from string) (*record, string, error) {
	own := e.lookup(from)
	if own.err != nil {
		return nil, "", own.err
	}
	if own.one() {
		return own.use()
	}
	steps, err := e.walk(from)
	if err != nil {
		return nil, "", err
	}
	org := organizationalDomain(from, steps)
	var psd *lookup
	for _, l := range steps[1:] {
		switch {
		case !l.one():
		case l.domain == org:
			return l.use()
		case l.psd == 'y':
			psd = l
		}
	}
	if psd != nil {
		return psd.use()
	}
	why := "no DMARC record for " + from
	if len(steps) > 1 {
		why += " or above it in the DNS tree"
	}
	for _, l := range steps {
		if l.records > 1 {
			why += fmt.Sprintf(" (_dmarc.%s has %d DMARC records, so none applies)", l.domain, l.records)
			break
		}
	}
	return nil, "", noRecord{why}
}

// walk is the DNS tree walk of RFC 9989 §4.10 from domain: the lookups of
// the names it asks, in order. It stops at a single record with psd=y or
// psd=n, or after the last label. A failed lookup ends it with that error,
// since what the name holds could change the answer.
func (e *evaluation) walk(domain string) ([]*lookup, error) {
	var steps []*lookup
	for _, name := range walkNames(domain) {
		l := e.lookup(name)
		if l.err != nil {
			return nil, l.err
		}
		steps = append(steps, l)
		if l.one() && (l.psd == 'y' || l.psd == 'n') {
			break
		}
	}
	return steps, nil
}

// walkNames are the names a tree walk from domain asks, at most maxWalk:
// domain itself, then, for a name of eight labels or more, its last seven
// labels, else its parent; then one label fewer each time, down to the top
// label (RFC 9989 §4.10 steps 3, 4 and 7).
func walkNames(domain string) []string {
	labels := strings.Split(domain, ".")
	names := []string{domain}
	for n := min(len(labels)-1, maxWalk-1); n >= 1; n-- {
		names = append(names, strings.Join(labels[len(labels)-n:], "."))
	}
	return names
}

// organizationalDomain picks the organizational domain of start from the
// walk made from it (RFC 9989 §4.10.2), going through the names with a
// record from the longest: one with psd=n is it; one with psd=y, other than
// start itself, makes it the name one label below; otherwise it is the
// shortest name with a record, or start when there is none.
func organizationalDomain(start string, steps []*lookup) string {
	org := start
	for _, l := range steps {
		if !l.one() {
			continue
		}
		switch {
		case l.psd == 'n':
			return l.domain
		case l.psd == 'y' && l.domain != start:
			return childOf(l.domain, start)
		}
		org = l.domain
	}
	return org
}

// childOf is the name one label below parent on the way to domain, which
// is parent's subdomain: childOf("com", "a.b.example.com") is
// "example.com". The walk may not have asked it, when it shortened a long
// name.
func childOf(parent, domain string) string {
	labels := strings.Split(domain, ".")
	n := strings.Count(parent, ".") + 2
	return strings.Join(labels[len(labels)-n:], ".")
}

// orgDomain is the organizational domain of domain, by the discovery in use.
func (e *evaluation) orgDomain(domain string) (string, error) {
	if e.how == PublicSuffix {
		return OrganizationalDomain(domain), nil
	}
	steps, err := e.walk(domain)
	if err != nil {
		return "", err
	}
	return organizationalDomain(domain, steps), nil
}

// discoverByPublicSuffix follows RFC 7489 §6.6.3: the record at
// _dmarc.<from>, or else at _dmarc.<org>, org from the public suffix list.
// Several records, or one that is unusable, end discovery where they are.
func (e *evaluation) discoverByPublicSuffix(from string) (*record, string, error) {
	org := OrganizationalDomain(from)
	for _, domain := range []string{from, org} {
		l := e.lookup(domain)
		switch {
		case l.err != nil:
			return nil, "", l.err
		case l.records > 1:
			return nil, "", noRecord{fmt.Sprintf("_dmarc.%s has %d DMARC records, so none applies", domain, l.records)}
		case l.one():
			return l.use()
		}
		if org == from {
			return nil, "", noRecord{"no DMARC record for " + from}
		}
	}
	return nil, "", noRecord{fmt.Sprintf("no DMARC record for %s or its organisational domain %s", from, org)}
}

// domainExists tells np from sp. RFC 9989 (its definition of non-existent
// domains, after RFC 8020) says a name does not exist when a query for it
// answers NXDOMAIN, whatever the type, so one A lookup tells. RFC 9091 §2.1, for rfc7489, wants A, AAAA
// and MX all to answer NXDOMAIN.
func (e *evaluation) domainExists(domain string) (bool, error) {
	lookups := []func() error{
		func() error { _, err := e.r.LookupNetIP(e.ctx, "ip4", domain); return err },
	}
	if e.how == PublicSuffix {
		lookups = append(lookups,
			func() error { _, err := e.r.LookupNetIP(e.ctx, "ip6", domain); return err },
			func() error { _, err := e.r.LookupMX(e.ctx, domain); return err },
		)
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

// Coverage is the DMARC record that applies to a domain's mail, and where
// it was found: what `sluice doctor` checks a served domain has.
type Coverage struct {
	// PolicyDomain is where the record is: the domain, its organizational
	// domain, or (RFC 9989) a public suffix domain above it; "" when no
	// record applies, Reason saying why.
	PolicyDomain string
	// OrgDomain is the domain's organizational domain.
	OrgDomain string
	// Policy is the one that applies to the domain's mail: the record's p
	// for its own domain, else its sp (or np).
	Policy string
	Reason string
}

// Cover finds the record that applies to domain's mail as Evaluate finds
// it, the way how says. An error means DNS failed.
func Cover(ctx context.Context, r Resolver, how Discovery, domain string) (Coverage, error) {
	e := newEvaluation(ctx, r, how)
	rec, policyDomain, err := e.discover(domain)
	if none, ok := errors.AsType[noRecord](err); ok {
		return Coverage{Reason: none.why}, nil
	}
	if err != nil {
		return Coverage{}, err
	}
	org, err := e.orgDomain(domain) // the walk's lookups are cached
	if err != nil {
		return Coverage{}, err
	}
	policy, err := e.applicablePolicy(rec, domain, policyDomain)
	if err != nil {
		return Coverage{}, err
	}
	return Coverage{PolicyDomain: policyDomain, OrgDomain: org, Policy: string(policy)}, nil
}
