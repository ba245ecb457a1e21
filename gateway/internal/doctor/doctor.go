// Package doctor checks what a configuration needs published against what
// the DNS says, and the certificate the gateway presents: each record is
// ok, or a warning or an error saying what is wrong and the exact fix (the
// record line of `sluice dns` to publish). It reads; it changes nothing.
package doctor

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/dnsrecords"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/spf"
)

// Status is how a check came out.
type Status string

const (
	OK    Status = "ok"
	Warn  Status = "warn"  // works, but worse than it should
	Error Status = "error" // mail is lost, refused or unprotected: fix it
)

// Finding is the outcome of one check.
type Finding struct {
	Status Status `json:"status"`
	// Check is what was checked: MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
	// address, FCrDNS, certificate or Redis.
	Check   string `json:"check"`
	Name    string `json:"name"` // the DNS name, address or file checked
	Message string `json:"message"`
	// Fix is what to do, one line each: the record lines to publish.
	Fix []string `json:"fix,omitempty"`
}

// Options are what the checks need.
type Options struct {
	Config   *config.Config
	Plan     dnsrecords.Plan    // what Config needs published (dnsrecords.Build)
	Resolver *resolver.Resolver // asks the DNS everyone sees
	Now      time.Time          // zero: time.Now()
	// Roots verify the certificates, STARTTLS's and the MTA-STS policy
	// host's; nil: the system's.
	Roots *x509.CertPool
	// HTTPSPort is where the MTA-STS policy is fetched; 0: 443, as
	// senders do. Tests serve it elsewhere.
	HTTPSPort int
}

// ExpiryMargin is how soon before its end a certificate is an error: an
// automatic renewal that has not happened by then is failing.
const ExpiryMargin = 14 * 24 * time.Hour

// Run makes every check and returns the findings, in the order of the
// plan: each served domain's records, then the gateway's own.
func Run(ctx context.Context, o Options) []Finding {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	d := &doctor{Options: o, spf: spf.New(o.Resolver)}
	d.addrs = d.outbound(ctx)
	for _, r := range o.Plan.Records() {
		switch r.Kind {
		case dnsrecords.KindMX:
			d.mx(ctx, r)
		case dnsrecords.KindSPF:
			d.checkSPF(ctx, r)
		case dnsrecords.KindDKIM:
			d.dkim(ctx, r)
		case dnsrecords.KindDMARC:
			d.dmarc(ctx, r)
		case dnsrecords.KindDMARCReport:
			d.txtPresent(ctx, r, "DMARC", "v=DMARC1", Warn, "no consent record: receivers will not send "+r.Domain+"'s DMARC reports to another domain without it")
		case dnsrecords.KindMTASTS:
			d.mtasts(ctx, r)
			if len(o.Config.HTTPS.Listen) == 0 { // served elsewhere: no KindMTASTSHost
				d.policyServed(ctx, r)
			}
		case dnsrecords.KindMTASTSHost:
			d.mtastsHost(ctx, r)
			d.policyServed(ctx, r)
		case dnsrecords.KindTLSRPT:
			d.txtPresent(ctx, r, "TLS-RPT", "v=TLSRPTv1", Warn, "no TLS-RPT record: senders cannot tell you when they fail to reach "+r.Domain+" over TLS")
		case dnsrecords.KindAddress:
			d.address(ctx, r)
		}
	}
	d.mxAddresses(ctx)
	d.fcrdns(ctx)
	d.certificate(d.ownMX(ctx))
	d.redis(ctx)
	return d.findings
}

type doctor struct {
	Options
	spf      *spf.Checker
	findings []Finding
	// addrs are the outbound addresses checked: those configured, or the
	// hostname's when none is.
	addrs []dnsrecords.Source
	// mxAddrs are the addresses each MX host of records.mx resolves to.
	mxAddrs map[string][]netip.Addr
}

func (d *doctor) add(status Status, check, name, format string, args ...any) *Finding {
	d.findings = append(d.findings, Finding{Status: status, Check: check, Name: name, Message: fmt.Sprintf(format, args...)})
	return &d.findings[len(d.findings)-1]
}

// fix adds the lines to publish to f.
func (f *Finding) fix(lines ...string) { f.Fix = append(f.Fix, lines...) }

// recordLines are the zone-file lines of records.
func recordLines(rs ...dnsrecords.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Line())
	}
	return out
}

// name is a record's owner name without the final dot.
func name(r dnsrecords.Record) string { return strings.TrimSuffix(r.Name, ".") }

// lookupFailed is a DNS failure that says nothing about the record.
func lookupFailed(err error) bool {
	var de *net.DNSError
	return err != nil && !(errors.As(err, &de) && de.IsNotFound)
}

// outbound are the addresses whose SPF coverage and reverse DNS are
// checked: the configured sources, or the addresses of the hostname, on
// which the system's choice of source most likely falls.
func (d *doctor) outbound(ctx context.Context) []dnsrecords.Source {
	srcs := dnsrecords.Sources(d.Config)
	if len(srcs) > 0 {
		d.families()
		return srcs
	}
	host := d.Config.Hostname
	for _, network := range []string{"ip4", "ip6"} {
		addrs, err := d.Resolver.LookupNetIP(ctx, network, host)
		if lookupFailed(err) {
			d.add(Error, "address", host, "no outbound address is configured ([[relay.source]]), and the lookup of %s's addresses failed: %v", host, err)
			return nil
		}
		for _, a := range addrs {
			srcs = append(srcs, dnsrecords.Source{Addr: a, Helo: d.Config.Relay.Helo})
		}
	}
	if len(srcs) == 0 {
		d.add(Warn, "address", host, "no outbound address is configured ([[relay.source]]) and %s has no address in DNS, so SPF coverage and reverse DNS cannot be checked", host).
			fix("list the addresses Sluice sends from in [[relay.source]] (address, helo), run `sluice dns` and publish what it prints")
	} else {
		d.add(Warn, "address", host, "no outbound address is configured ([[relay.source]]): checking %s's addresses (%s) as the ones Sluice sends from", host, addrList(srcs)).
			fix("list the addresses Sluice sends from in [[relay.source]] (address, helo) so that SPF and reverse DNS are checked for those")
	}
	return srcs
}

// families warns of an address family the relay uses without a source
// of it: its connections come from an address the system picks, which the
// SPF records do not list and whose reverse DNS nobody checked.
func (d *doctor) families() {
	for _, f := range d.Config.SourceFamiliesMissing() {
		fix := ""
		if f == "IPv6" {
			fix = ", or set [relay] ipv6 = false if it has none"
		}
		d.add(Warn, "address", "relay.source", "no %s [[relay.source]]: mail to %s destinations leaves from an address the system picks, which the SPF records do not list and whose reverse DNS is not checked", f, f).
			fix("add a [[relay.source]] with this machine's public " + f + " address and publish what sluice dns prints" + fix)
	}
}

func addrList(srcs []dnsrecords.Source) string {
	var s []string
	for _, a := range srcs {
		s = append(s, a.Addr.String())
	}
	return strings.Join(s, ", ")
}

// mx checks that the domain's MX records are ours; all of a domain's MX
// records in the plan are checked at its first.
func (d *doctor) mx(ctx context.Context, r dnsrecords.Record) {
	var want []dnsrecords.Record
	for _, w := range d.Plan.Find(dnsrecords.KindMX) {
		if w.Domain == r.Domain {
			want = append(want, w)
		}
	}
	if want[0].Value != r.Value {
		return
	}
	domain := r.Domain
	mxs, err := d.Resolver.LookupMX(ctx, domain)
	if lookupFailed(err) {
		d.add(Error, "MX", domain, "the MX lookup failed: %v", err)
		return
	}
	if len(mxs) == 0 {
		d.add(Error, "MX", domain, "no MX record: mail for %s is not delivered to Sluice", domain).fix(recordLines(want...)...)
		return
	}
	ours := d.Config.MXHosts()
	var found, others []string
	for _, mx := range mxs {
		host := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
		if host == "" {
			d.add(Error, "MX", domain, "a null MX record (\"0 .\"): %s says it accepts no mail", domain).fix(recordLines(want...)...)
			return
		}
		if slices.Contains(ours, host) {
			found = append(found, host)
		} else {
			others = append(others, host)
		}
	}
	switch {
	case len(found) == 0:
		d.add(Error, "MX", domain, "MX points elsewhere (%s), not at %s: mail for %s does not reach Sluice", strings.Join(others, ", "), strings.Join(ours, ", "), domain).
			fix(append(recordLines(want...), "and remove the MX records of "+strings.Join(others, ", "))...)
	case len(others) > 0:
		d.add(Warn, "MX", domain, "MX also points at %s, which records.mx does not name: mail sent there bypasses Sluice", strings.Join(others, ", ")).
			fix("remove the MX records of " + strings.Join(others, ", ") + ", or add them to records.mx if they are yours")
	case len(found) < len(ours):
		var missing []dnsrecords.Record
		for i, h := range ours {
			if !slices.Contains(found, h) {
				missing = append(missing, want[i])
			}
		}
		d.add(Warn, "MX", domain, "MX lacks %d of the hosts in records.mx", len(missing)).fix(recordLines(missing...)...)
	default:
		d.add(OK, "MX", domain, "MX points at %s", strings.Join(found, ", "))
	}
}

// mxAddresses checks that each of our MX hosts has an address: an MX
// record pointing at a name that does not resolve looks right, and no
// mail arrives by it.
func (d *doctor) mxAddresses(ctx context.Context) {
	for _, host := range d.Config.MXHosts() {
		addrs := d.resolves(ctx, "MX", host, "no A or AAAA record: senders cannot deliver to this MX host",
			"publish A (and AAAA) records of "+host+": the public addresses Sluice listens on (smtp.listen)")
		if d.mxAddrs == nil {
			d.mxAddrs = map[string][]netip.Addr{}
		}
		d.mxAddrs[host] = addrs
	}
}

// lookupAddrs are host's A and AAAA addresses, and the error of a lookup
// that failed.
func (d *doctor) lookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	var failed error
	for _, network := range []string{"ip4", "ip6"} {
		a, err := d.Resolver.LookupNetIP(ctx, network, host)
		addrs = append(addrs, a...)
		if lookupFailed(err) {
			failed = err
		}
	}
	return addrs, failed
}

// ownMX tells, for each MX host of records.mx, whether it is this
// gateway, whose certificate the doctor reads: a second MX may be another
// gateway, with a certificate of its own, checked by the doctor there. A
// host is this one when it is the hostname, or when one of its addresses
// is this machine's: an outbound address, a specific smtp.listen address,
// or one of the hostname's. The MX hosts' addresses are mxAddresses'.
func (d *doctor) ownMX(ctx context.Context) map[string]bool {
	ours := map[netip.Addr]bool{}
	for _, s := range d.addrs {
		ours[s.Addr] = true
	}
	for _, l := range d.Config.SMTP.Listen {
		if ap, err := netip.ParseAddrPort(l); err == nil && !ap.Addr().IsUnspecified() {
			ours[ap.Addr().Unmap()] = true
		}
	}
	self, _ := d.lookupAddrs(ctx, d.Config.Hostname)
	for _, a := range self {
		ours[a] = true
	}
	own := map[string]bool{}
	for _, host := range d.Config.MXHosts() {
		own[host] = host == d.Config.Hostname || slices.ContainsFunc(d.mxAddrs[host], func(a netip.Addr) bool { return ours[a.Unmap()] })
	}
	return own
}

// checkSPF checks that the name has one SPF record and that it passes
// each outbound address, as receivers evaluate it (lookup limits and all).
func (d *doctor) checkSPF(ctx context.Context, r dnsrecords.Record) {
	n := name(r)
	txts, err := d.Resolver.LookupTXT(ctx, n)
	if lookupFailed(err) {
		d.add(Error, "SPF", n, "the TXT lookup failed: %v", err)
		return
	}
	var records []string
	for _, t := range txts {
		if t == "v=spf1" || strings.HasPrefix(strings.ToLower(t), "v=spf1 ") {
			records = append(records, t)
		}
	}
	switch len(records) {
	case 0:
		d.add(Error, "SPF", n, "no SPF record: receivers cannot tell mail Sluice sends for %s from forgeries", n).fix(r.Line())
		return
	case 1:
	default:
		d.add(Error, "SPF", n, "%d SPF records: receivers treat more than one as an error (permerror); merge them into one", len(records)).fix(r.Line())
		return
	}
	// The addresses that send as this name: a HELO name's own, else all.
	addrs := d.addrs
	if slices.ContainsFunc(d.addrs, func(s dnsrecords.Source) bool { return s.Helo == n }) && r.Domain == d.Config.Hostname {
		addrs = slices.DeleteFunc(slices.Clone(d.addrs), func(s dnsrecords.Source) bool { return s.Helo != n })
	}
	if len(addrs) == 0 {
		d.add(Warn, "SPF", n, "%q is published, but no outbound address is known to check it against", records[0])
		return
	}
	var failed, passed []string
	limit := false
	for _, a := range addrs {
		res := d.spf.MailFrom(ctx, a.Addr, a.Helo, "postmaster@"+n)
		if res.Result == "pass" {
			passed = append(passed, a.Addr.String())
			continue
		}
		limit = limit || overLimit(res)
		failed = append(failed, fmt.Sprintf("%s gets %s (%s)", a.Addr, res.Result, res.Reason))
	}
	// Evaluation stops at the first mechanism that matches, so a record
	// that lists our addresses before its includes passes them however
	// many lookups the rest needs; the domain's other senders, matched
	// later, get permerror. An address no record lists is evaluated
	// through to the end, as theirs are.
	var probe spf.Result
	if !limit && len(failed) == 0 {
		probe = d.spf.MailFrom(ctx, spfProbe, d.Config.Relay.Helo, "postmaster@"+n)
	}
	switch {
	case limit:
		d.add(Error, "SPF", n, "%q needs more than the 10 DNS lookups (or 2 void lookups) SPF allows, so receivers get permerror: %s", records[0], strings.Join(failed, "; ")).
			fix("flatten the includes, or publish:", r.Line())
	case overLimit(probe):
		d.add(Error, "SPF", n, "%q passes %s, but the rest of it needs more than the 10 DNS lookups (or 2 void lookups) SPF allows: every other sender for %s gets permerror (%s)", records[0], strings.Join(passed, ", "), n, probe.Reason).
			fix("flatten the includes, or publish:", r.Line())
	case len(failed) > 0:
		d.add(Error, "SPF", n, "%q does not cover every outbound address: %s", records[0], strings.Join(failed, "; ")).fix(r.Line())
	default:
		d.add(OK, "SPF", n, "%q passes %s", records[0], strings.Join(passed, ", "))
	}
}

// spfProbe is an address of TEST-NET-1 (RFC 5737), which no SPF record
// lists: its evaluation goes through the whole record.
var spfProbe = netip.MustParseAddr("192.0.2.1")

// overLimit reports whether an SPF evaluation ended on the limit of
// DNS lookups or of void lookups (RFC 7208 section 4.6.4).
func overLimit(res spf.Result) bool {
	return res.Result == "permerror" && strings.Contains(res.Reason, "lookup limit")
}

// dkim checks that the published key is the one Sluice signs with.
func (d *doctor) dkim(ctx context.Context, r dnsrecords.Record) {
	n := name(r)
	txts, err := d.Resolver.LookupTXT(ctx, n)
	if lookupFailed(err) {
		d.add(Error, "DKIM", n, "the TXT lookup failed: %v", err)
		return
	}
	switch len(txts) {
	case 0:
		d.add(Error, "DKIM", n, "no DKIM key published: receivers cannot verify Sluice's signatures with this selector").fix(r.Line())
		return
	case 1:
	default:
		d.add(Error, "DKIM", n, "%d TXT records: verifiers fail signatures when a selector has more than one", len(txts)).fix("publish only:", r.Line())
		return
	}
	ours, _ := dkim.PublicKey(r.Text)
	published, err := dkim.PublicKey(txts[0])
	switch {
	case err != nil:
		d.add(Error, "DKIM", n, "the published record is not a usable key (%v)", err).fix(r.Line())
	case !ours.(interface{ Equal(crypto.PublicKey) bool }).Equal(published):
		d.add(Error, "DKIM", n, "the published key is not the key in the [[dkim.key]] file: every signature with this selector fails").fix(r.Line())
	default:
		d.add(OK, "DKIM", n, "the published key matches the private key")
	}
}

// dmarc checks that the domain has a DMARC record, with the policy asked:
// its own, or one above it that receivers find for it.
func (d *doctor) dmarc(ctx context.Context, r dnsrecords.Record) {
	n := name(r)
	rec, status := d.oneTXT(ctx, r, "DMARC", "v=DMARC1")
	if status == "" {
		d.dmarcAbove(ctx, r)
		return
	}
	if status != OK {
		return
	}
	policy := ""
	for tag := range strings.SplitSeq(rec, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(tag), "=")
		if strings.EqualFold(strings.TrimSpace(k), "p") { // tag names are case-insensitive
			if policy != "" {
				continue // of a repeated tag the first counts
			}
			policy = strings.ToLower(strings.TrimSpace(v))
		}
	}
	want := d.Config.Records.DMARCPolicy
	switch {
	case policy == "":
		d.add(Error, "DMARC", n, "%q has no p= tag: receivers following RFC 7489 ignore it (RFC 9989 reads it as p=none)", rec).fix(r.Line())
	case policy != want:
		d.add(Warn, "DMARC", n, "%q has p=%s, but records.dmarc_policy is %s", rec, policy, want).fix(r.Line())
	case policy == "none":
		d.add(OK, "DMARC", n, "%q: p=none only asks for reports; set records.dmarc_policy to quarantine, then reject, once they show %s's mail passing", rec, r.Domain)
	default:
		d.add(OK, "DMARC", n, "%q", rec)
	}
}

// dmarcAbove checks the record that covers a domain without one of its
// own, found as the gateway finds it for incoming mail ([auth]
// dmarc_discovery): a subdomain's mail is covered by its organizational
// domain's record, whose sp= (else p=) applies to it.
func (d *doctor) dmarcAbove(ctx context.Context, r dnsrecords.Record) {
	n := name(r)
	how, _ := dmarc.ParseDiscovery(d.Config.Auth.DMARCDiscovery) // validated with the config
	cov, err := dmarc.Cover(ctx, d.Resolver, how, r.Domain)
	want := d.Config.Records.DMARCPolicy
	at := "_dmarc." + cov.PolicyDomain
	switch {
	case err != nil:
		d.add(Error, "DMARC", n, "no DMARC record of its own, and looking for one above it failed: %v", err)
	case cov.PolicyDomain == "":
		d.add(Error, "DMARC", n, "no DMARC record: receivers apply no policy to forgeries of %s, and big mailbox providers distrust its mail (receivers find %s)", r.Domain, cov.Reason).fix(r.Line())
	case cov.PolicyDomain != cov.OrgDomain:
		// A public suffix domain's record (psd=y) is its registry's, not
		// the owner's: it stands in for a record nobody published.
		d.add(Warn, "DMARC", n, "no DMARC record of its own or of its organizational domain %s: only the public suffix domain's record at %s applies (policy %s), which its registry sets", cov.OrgDomain, at, cov.Policy).fix(r.Line())
	case cov.Policy != want:
		d.add(Warn, "DMARC", n, "no record of its own: the organizational domain's record at %s covers %s (found by auth.dmarc_discovery = %s), with policy %s, but records.dmarc_policy is %s", at, r.Domain, how, cov.Policy, want).
			fix("set sp= (or p=) of "+at+" to "+want+", or publish "+r.Domain+"'s own:", r.Line())
	default:
		d.add(OK, "DMARC", n, "no record of its own: the organizational domain's record at %s covers %s (found by auth.dmarc_discovery = %s), with policy %s", at, r.Domain, how, cov.Policy)
	}
}

// oneTXT looks up r's name for the TXT record starting with prefix. It
// reports a failed lookup or several such records itself, returning
// their status; a missing record is status "", for the caller to report.
func (d *doctor) oneTXT(ctx context.Context, r dnsrecords.Record, check, prefix string) (string, Status) {
	n := name(r)
	txts, err := d.Resolver.LookupTXT(ctx, n)
	if lookupFailed(err) {
		d.add(Error, check, n, "the TXT lookup failed: %v", err)
		return "", Error
	}
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(strings.ToLower(t), strings.ToLower(prefix)) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return "", ""
	case 1:
		return found[0], OK
	}
	d.add(Error, check, n, "%d %s records: receivers ignore them all", len(found), check).fix("publish only:", r.Line())
	return "", Error
}

// txtPresent checks that r's name has a TXT record starting with prefix.
func (d *doctor) txtPresent(ctx context.Context, r dnsrecords.Record, check, prefix string, missing Status, why string) {
	rec, status := d.oneTXT(ctx, r, check, prefix)
	switch status {
	case "":
		d.add(missing, check, name(r), "%s", why).fix(r.Line())
	case OK:
		d.add(OK, check, name(r), "%q", rec)
	}
}

// mtasts checks that the published id is the id of the policy served:
// senders fetch a policy again only when its id changes.
func (d *doctor) mtasts(ctx context.Context, r dnsrecords.Record) {
	n := name(r)
	txts, err := d.Resolver.LookupTXT(ctx, n)
	if lookupFailed(err) {
		d.add(Error, "MTA-STS", n, "the TXT lookup failed: %v", err)
		return
	}
	want, _ := mtasts.ParseRecord([]string{r.Text})
	id, err := mtasts.ParseRecord(txts)
	switch {
	case err == mtasts.ErrNoRecord:
		d.add(Error, "MTA-STS", n, "no MTA-STS record: senders do not look for the policy Sluice serves").fix(r.Line())
	case err != nil:
		d.add(Error, "MTA-STS", n, "the MTA-STS record is unusable: %v", err).fix(r.Line())
	case id != want:
		d.add(Error, "MTA-STS", n, "the record's id %s is not the id of the policy Sluice serves (%s): senders that cached an older policy keep using it", id, want).fix(r.Line())
	default:
		d.add(OK, "MTA-STS", n, "id %s is the policy's", id)
	}
}

// mtastsHost checks that the policy's host name resolves.
func (d *doctor) mtastsHost(ctx context.Context, r dnsrecords.Record) {
	n := name(r)
	d.resolves(ctx, "MTA-STS", n, fmt.Sprintf("no address: senders cannot fetch the policy from https://%s%s", n, mtasts.Path), r.Line())
}

// resolves checks, as check, that host has an address: ok, or an error
// saying what is missing with its fix. It returns the addresses.
func (d *doctor) resolves(ctx context.Context, check, host, missing, fix string) []netip.Addr {
	addrs, err := d.lookupAddrs(ctx, host)
	switch {
	case len(addrs) > 0:
		d.add(OK, check, host, "resolves to %s", joinAddrs(addrs))
	case err != nil:
		d.add(Error, check, host, "the address lookup failed: %v", err)
	default:
		d.add(Error, check, host, "%s", missing).fix(fix)
	}
	return addrs
}

func joinAddrs(addrs []netip.Addr) string {
	var s []string
	for _, a := range addrs {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}

// address checks that a HELO name resolves to the outbound address
// that uses it, the forward half of FCrDNS.
func (d *doctor) address(ctx context.Context, r dnsrecords.Record) {
	n := name(r)
	want, _ := netip.ParseAddr(r.Value)
	network := "ip4"
	if want.Is6() {
		network = "ip6"
	}
	addrs, err := d.Resolver.LookupNetIP(ctx, network, n)
	switch {
	case lookupFailed(err):
		d.add(Error, "address", n, "the %s lookup failed: %v", r.Type, err)
	case slices.Contains(addrs, want):
		d.add(OK, "address", n, "resolves to %s", want)
	case len(addrs) == 0:
		d.add(Error, "address", n, "no %s record: the HELO name Sluice uses from %s does not resolve, which receivers hold against its mail", r.Type, want).fix(r.Line())
	default:
		d.add(Error, "address", n, "resolves to %s, not to %s, the address Sluice sends from with this HELO name", joinAddrs(addrs), want).fix(r.Line())
	}
}

// fcrdns checks each outbound address's reverse DNS: its PTR name must
// resolve back to it, and should be the HELO name it uses.
func (d *doctor) fcrdns(ctx context.Context) {
	ptrs := d.Plan.Find(dnsrecords.KindPTR)
	for _, s := range d.addrs {
		a := s.Addr.String()
		fix := []string{"ask whoever owns " + a + " (your hosting provider) for the PTR record"}
		rev, _ := dns.ReverseAddr(a)
		for _, p := range ptrs {
			if p.Name == rev {
				fix = append(fix, p.Line())
			}
		}
		name, result := d.Resolver.VerifiedName(ctx, s.Addr)
		switch {
		case result == resolver.NameNone:
			d.add(Error, "FCrDNS", a, "no PTR record: many receivers refuse mail from an address without reverse DNS").fix(fix...)
		case result == resolver.NameTempError:
			d.add(Error, "FCrDNS", a, "the reverse lookup failed; run the doctor again")
		case result == resolver.NameFail:
			d.add(Error, "FCrDNS", a, "its PTR name does not resolve back to %s: receivers treat it as having no name", a).
				fix(append(fix, "and an A/AAAA record of the PTR name for "+a)...)
		case name != s.Helo:
			d.add(Warn, "FCrDNS", a, "the PTR name is %s, but Sluice says EHLO %s from it: receivers compare them", name, s.Helo).
				fix(append(fix, "or set that source's helo to "+name)...)
		default:
			d.add(OK, "FCrDNS", a, "%s resolves back to it, and is the HELO name", name)
		}
	}
}

// Write writes the findings as text, one line each with its fix below,
// and a count at the end.
func Write(w io.Writer, findings []Finding) error {
	var b strings.Builder
	count := map[Status]int{}
	for _, f := range findings {
		count[f.Status]++
		fmt.Fprintf(&b, "%-5s  %-11s %s: %s\n", f.Status, f.Check, f.Name, f.Message)
		for _, line := range f.Fix {
			fmt.Fprintf(&b, "       fix: %s\n", line)
		}
	}
	fmt.Fprintf(&b, "%d ok, %d warnings, %d errors\n", count[OK], count[Warn], count[Error])
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the findings as a JSON list.
func WriteJSON(w io.Writer, findings []Finding) error {
	if findings == nil {
		findings = []Finding{}
	}
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(findings)
}

// Failed reports whether any finding is an error.
func Failed(findings []Finding) bool {
	return slices.ContainsFunc(findings, func(f Finding) bool { return f.Status == Error })
}
