// Package dnsrecords works out the DNS records a configuration needs, for
// `sluice dns` to print and `sluice doctor` to check: each served domain's
// MX, SPF, DKIM, DMARC, MTA-STS and TLS-RPT records, and the gateway's own
// addresses and reverse DNS. It reads the DKIM key files; it does no DNS.
package dnsrecords

import (
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
)

// TTL is every record's suggested TTL: an hour, short enough that a
// mistake is soon mended, long enough to spare the nameservers.
const TTL = 3600

// What a record is for, so that the doctor can find the ones it checks.
const (
	KindMX          = "mx"
	KindSPF         = "spf"
	KindDKIM        = "dkim"
	KindDMARC       = "dmarc"
	KindDMARCReport = "dmarc-report" // a report domain's consent to receive another's reports
	KindMTASTS      = "mta-sts"      // the _mta-sts TXT record
	KindMTASTSHost  = "mta-sts-host" // the mta-sts.<domain> name the policy is fetched from
	KindTLSRPT      = "tls-rpt"
	KindAddress     = "address" // A or AAAA of a HELO name
	KindPTR         = "ptr"
)

// Record is one resource record to publish.
type Record struct {
	Name    string `json:"name"`  // absolute, with the final dot
	Type    string `json:"type"`  // MX, TXT, A, AAAA, CNAME, PTR
	TTL     int    `json:"ttl"`   // seconds
	Value   string `json:"value"` // the data in zone-file form: TXT as quoted strings of at most 255 bytes
	Comment string `json:"comment"`
	// Domain is the served domain the record is for; the gateway's own
	// records (addresses, PTR, HELO SPF) have the hostname.
	Domain string `json:"domain"`

	// Text is a TXT record's text, unquoted and in one piece: what a DNS
	// provider's API takes, where Value is what a zone file takes.
	Text string `json:"text,omitempty"`

	Kind string `json:"-"`
	// Notes are comment lines printed after the record: the MTA-STS
	// policy its id is of.
	Notes []string `json:"-"`
}

// String is the record as a zone-file line, its comment at the end.
func (r Record) String() string { return r.Line() + " ; " + r.Comment }

// Line is the record as a zone-file line without the comment.
func (r Record) Line() string { return fmt.Sprintf("%s %d IN %s %s", r.Name, r.TTL, r.Type, r.Value) }

// Section is the records of one domain, or of the gateway itself.
type Section struct {
	Title string
	// Notes are comment lines printed before the records: what cannot be
	// worked out from the configuration and must be filled in by hand.
	Notes   []string
	Records []Record
}

// Plan is every record a configuration needs.
type Plan struct {
	Sections []Section
}

// Records are the plan's records, in order.
func (p Plan) Records() []Record {
	out := []Record{}
	for _, s := range p.Sections {
		out = append(out, s.Records...)
	}
	return out
}

// Find returns the records of one kind, in order.
func (p Plan) Find(kind string) []Record {
	var out []Record
	for _, r := range p.Records() {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// WriteZone writes the plan as zone-file text: each section under a
// comment line with its title, each record with its comment.
func (p Plan) WriteZone(w io.Writer) error {
	var b strings.Builder
	b.WriteString("; The DNS records this configuration needs (sluice dns). Publish each in the\n")
	b.WriteString("; zone of its name; `sluice doctor` checks what is published.\n")
	for _, s := range p.Sections {
		fmt.Fprintf(&b, "\n; %s\n", s.Title)
		for _, n := range s.Notes {
			b.WriteString(";   " + n + "\n")
		}
		for _, r := range s.Records {
			b.WriteString(r.String() + "\n")
			for _, n := range r.Notes {
				b.WriteString(";   " + n + "\n")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the plan's records as a JSON list, for automation.
func (p Plan) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(p.Records())
}

// Source is one outbound address and the name it says EHLO with.
type Source struct {
	Addr netip.Addr
	Helo string
}

// Sources are the configured outbound addresses, [[relay.source]] (into
// which validation folds relay.source_ipv4 and source_ipv6, and fills in
// each helo). None means the system picks.
func Sources(c *config.Config) []Source {
	var out []Source
	for _, s := range c.Relay.Sources {
		out = append(out, Source{Addr: netip.MustParseAddr(s.Address), Helo: s.Helo}) // validated by config
	}
	return out
}

// Build works out the records c needs. It reads the DKIM key files; an
// error names the one that cannot be read.
func Build(c *config.Config) (Plan, error) {
	b := builder{c: c, sources: Sources(c)}
	for _, d := range c.Domains {
		if err := b.domain(d); err != nil {
			return Plan{}, err
		}
	}
	if !slices.Contains(c.Domains, c.SRS.Domain) {
		b.start("SRS domain "+c.SRS.Domain, c.SRS.Domain)
		// Only Sluice sends with SRS senders, so nothing else may.
		b.spf(c.SRS.Domain, "-all", "forwarded mail's envelope sender is an SRS address at "+c.SRS.Domain+", sent only by Sluice")
	}
	if len(c.DKIM.Keys) > 0 && !slices.Contains(c.Domains, c.DKIM.Domain) {
		b.start("DKIM domain "+c.DKIM.Domain, c.DKIM.Domain)
		b.spf(c.DKIM.Domain, "~all", "SPF of the signing domain, so that its DMARC can pass on SPF too")
		if err := b.dkim(c.DKIM.Domain); err != nil {
			return Plan{}, err
		}
	}
	b.gateway()
	return Plan{Sections: b.sections}, nil
}

type builder struct {
	c        *config.Config
	sources  []Source
	sections []Section
	cur      string // the Domain of the records added
}

func (b *builder) start(title, domain string) {
	b.sections = append(b.sections, Section{Title: title})
	b.cur = domain
}

func (b *builder) note(format string, args ...any) {
	s := &b.sections[len(b.sections)-1]
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

func (b *builder) add(r Record) {
	r.TTL = TTL
	r.Domain = b.cur
	r.Name = dns.Fqdn(r.Name)
	if r.Type == "TXT" {
		r.Value = QuoteTXT(r.Text)
	}
	s := &b.sections[len(b.sections)-1]
	s.Records = append(s.Records, r)
}

// submitsAs reports whether a user of the submission service may send as
// an address at domain d.
func submitsAs(c *config.Config, d string) bool {
	if !c.Submission.Enabled() {
		return false
	}
	for _, u := range c.Submission.Users {
		for _, s := range u.Senders {
			if strings.HasSuffix(s, "@"+d) {
				return true
			}
		}
	}
	return false
}

// domain adds the records of one served domain.
func (b *builder) domain(d string) error {
	c := b.c
	b.start(d, d)
	for i, host := range c.MXHosts() {
		b.add(Record{Kind: KindMX, Name: d, Type: "MX", Value: fmt.Sprintf("%d %s", 10*(i+1), dns.Fqdn(host)),
			Comment: "mail for " + d + " goes to " + host + ", where Sluice listens"})
	}
	// ~all: the domain's people may send their own mail through another
	// service this configuration does not know; a softfail marks that
	// mail rather than having it refused while they add it, and DMARC
	// is what tells receivers to act. Change it to -all once every
	// sender is listed.
	comment := "who may send with an envelope sender at " + d
	var uses []string
	if d == c.SRS.Domain {
		uses = append(uses, "for forwarded mail (SRS)")
	}
	if submitsAs(c, d) {
		// Submitted mail keeps the user's address as its envelope
		// sender, and leaves from the same addresses as forwarded mail.
		uses = append(uses, "for mail its users send as "+d+" ([submission])")
	}
	if len(uses) > 0 {
		comment += ", as Sluice does " + strings.Join(uses, " and ")
	}
	b.spf(d, "~all", comment+"; ~all: add any other service that sends for "+d+", then -all")
	if err := b.dkim(d); err != nil {
		return err
	}
	b.dmarc(d)
	if p, ok := c.MTASTSPolicy(); ok {
		r := Record{Kind: KindMTASTS, Name: "_mta-sts." + d, Type: "TXT", Text: p.Record(),
			Comment: "MTA-STS: senders fetch the policy below again when this id changes (it changes with the policy)"}
		// Without [https] listen another web server serves the policy
		// (docs/tls.md), at an address this configuration does not know.
		served := len(c.HTTPS.Listen) > 0
		if served {
			r.Notes = append(r.Notes, "the policy Sluice serves at https://mta-sts."+d+"/.well-known/mta-sts.txt:")
		} else {
			r.Notes = append(r.Notes, "Sluice does not serve the policy ([https] listen is not set): serve it from your web server,",
				"with a certificate for mta-sts."+d+", at https://mta-sts."+d+"/.well-known/mta-sts.txt:")
		}
		for line := range strings.Lines(p.String()) {
			r.Notes = append(r.Notes, "  "+strings.TrimRight(line, "\r\n"))
		}
		b.add(r)
		if served {
			b.add(Record{Kind: KindMTASTSHost, Name: "mta-sts." + d, Type: "CNAME", Value: dns.Fqdn(c.Hostname),
				Comment: "where senders fetch the MTA-STS policy: Sluice's [https] listener, with a certificate for this name"})
		}
	}
	b.add(Record{Kind: KindTLSRPT, Name: "_smtp._tls." + d, Type: "TXT", Text: "v=TLSRPTv1; rua=mailto:" + c.Records.ReportAddress,
		Comment: "TLS-RPT: where senders report failures to reach " + d + " over TLS (RFC 8460)"})
	return nil
}

// spf adds the SPF record of name: the outbound addresses, or the
// include configured, or the hostname's addresses when neither is known.
func (b *builder) spf(name, all, comment string) {
	terms := []string{"v=spf1"}
	switch {
	case b.c.Records.SPFInclude != "":
		terms = append(terms, "include:"+b.c.Records.SPFInclude)
	case len(b.sources) > 0:
		for _, s := range b.sources {
			terms = append(terms, ipTerm(s.Addr))
		}
	default:
		terms = append(terms, "a:"+b.c.Hostname)
	}
	terms = append(terms, all)
	b.add(Record{Kind: KindSPF, Name: name, Type: "TXT", Text: strings.Join(terms, " "), Comment: "SPF: " + comment})
}

func ipTerm(a netip.Addr) string {
	if a.Is4() {
		return "ip4:" + a.String()
	}
	return "ip6:" + a.String()
}

// dkim adds a key record for each [[dkim.key]] of domain: the gateway's
// signing domain's, or a served domain's own.
func (b *builder) dkim(domain string) error {
	c := b.c
	for i, k := range c.DKIM.Keys {
		if k.Domain != domain {
			continue
		}
		key, err := dkim.LoadKey(c.Path(k.File))
		if err != nil {
			return fmt.Errorf("%s: %v", c.Where(fmt.Sprintf("dkim.key.%d.file", i)), err)
		}
		r, err := DKIM(k.Selector, domain, key)
		if err != nil {
			return fmt.Errorf("%s: %v", c.Where(fmt.Sprintf("dkim.key.%d.file", i)), err)
		}
		b.add(r)
	}
	return nil
}

// DKIM is the key record of a signing key, as `sluice keygen` prints it.
func DKIM(selector, domain string, key crypto.Signer) (Record, error) {
	txt, err := dkim.TXTRecord(key)
	if err != nil {
		return Record{}, err
	}
	return Record{Kind: KindDKIM, Name: dns.Fqdn(selector + "._domainkey." + domain), Type: "TXT", TTL: TTL,
		Text: txt, Value: QuoteTXT(txt), Domain: domain,
		Comment: "DKIM: the public key of selector " + selector + ", which receivers verify Sluice's d=" + domain + " signatures with"}, nil
}

// dmarc adds the suggested DMARC record, and the report domain's consent
// when the reports go to another organization's domain (RFC 7489 section
// 7.1): a subdomain of d is d's own.
func (b *builder) dmarc(d string) {
	r := b.c.Records
	b.add(Record{Kind: KindDMARC, Name: "_dmarc." + d, Type: "TXT", Text: "v=DMARC1; p=" + r.DMARCPolicy + "; rua=mailto:" + r.ReportAddress,
		Comment: "DMARC: what receivers do with mail from " + d + " that fails SPF and DKIM alignment (p=" + r.DMARCPolicy + ", records.dmarc_policy), and where they send reports"})
	_, reportDomain, _ := strings.Cut(r.ReportAddress, "@")
	if reportDomain != d && !strings.HasSuffix(reportDomain, "."+d) {
		b.add(Record{Kind: KindDMARCReport, Name: d + "._report._dmarc." + reportDomain, Type: "TXT", Text: "v=DMARC1",
			Comment: "in " + reportDomain + "'s zone: lets it receive " + d + "'s DMARC reports, which receivers check before sending them"})
	}
}

// gateway adds the gateway's own records: the addresses of its HELO
// names, their SPF, and the reverse DNS of each outbound address.
func (b *builder) gateway() {
	c := b.c
	b.start("the gateway, "+c.Hostname, c.Hostname)
	if len(b.sources) == 0 {
		b.note("No outbound address is configured ([[relay.source]]), so the records below cannot be")
		b.note("written for you. Publish, with this machine's public addresses:")
		b.note("  %s. %d IN A    <IPv4 address>      ; and AAAA <IPv6 address>", c.Hostname, TTL)
		b.note("  <reverse name of each address> %d IN PTR %s.  ; with your hosting provider", TTL, c.Relay.Helo)
		b.note("or list the addresses in [[relay.source]] and run sluice dns again.")
	}
	helos := map[string]bool{}
	for _, s := range b.sources {
		typ := "A"
		if s.Addr.Is6() {
			typ = "AAAA"
		}
		b.add(Record{Kind: KindAddress, Name: s.Helo, Type: typ, Value: s.Addr.String(),
			Comment: "the address of " + s.Helo + ", the name Sluice says EHLO with from " + s.Addr.String() + "; receivers check it resolves back"})
		helos[s.Helo] = true
	}
	if len(b.sources) > 0 && !helos[c.Hostname] {
		b.note("Publish A/AAAA records of %s for the addresses Sluice listens on.", c.Hostname)
	}
	for _, mx := range c.MXHosts() {
		if mx != c.Hostname {
			b.note("Publish A/AAAA records of %s (records.mx) for the addresses Sluice listens on.", mx)
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for h := range helos {
			if !yield(h) {
				return
			}
		}
	})
	if len(b.sources) == 0 {
		names = []string{c.Relay.Helo}
	}
	for _, h := range names {
		terms := []string{"a"} // without configured addresses: those of the name itself
		if len(b.sources) > 0 {
			terms = nil
		}
		for _, s := range b.sources {
			if s.Helo == h {
				terms = append(terms, ipTerm(s.Addr))
			}
		}
		// -all: a HELO name is this machine's alone.
		b.add(Record{Kind: KindSPF, Name: h, Type: "TXT", Text: "v=spf1 " + strings.Join(terms, " ") + " -all",
			Comment: "SPF of the HELO name, which receivers check for mail with an empty envelope sender"})
	}
	for _, s := range b.sources {
		rev, _ := dns.ReverseAddr(s.Addr.String())
		b.add(Record{Kind: KindPTR, Name: rev, Type: "PTR", Value: dns.Fqdn(s.Helo),
			Comment: "reverse DNS of " + s.Addr.String() + ", set by whoever owns the address (your hosting provider): receivers refuse or mark mail from an address whose name does not resolve back"})
	}
}

// QuoteTXT writes TXT data in zone-file form: quoted strings of at most
// 255 bytes, the most one may hold, with " and \ escaped.
func QuoteTXT(s string) string {
	var parts []string
	for len(s) > 0 {
		n := min(len(s), 255)
		// Only " and \ need escaping: the records written are printable ASCII.
		q := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s[:n])
		parts = append(parts, `"`+q+`"`)
		s = s[n:]
	}
	if parts == nil {
		return `""`
	}
	return strings.Join(parts, " ")
}
