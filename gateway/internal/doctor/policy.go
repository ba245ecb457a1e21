package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dnsrecords"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
)

// policyTimeout bounds the fetch of a policy, as senders bound theirs.
const policyTimeout = 20 * time.Second

// policyServed fetches the MTA-STS policy as senders do (RFC 8461 §3.3):
// over HTTPS from mta-sts.<domain>, with a certificate valid for that
// name, no redirects; and compares it with the configuration's. A TXT
// record with the right id is worth nothing if senders cannot fetch the
// policy it announces.
func (d *doctor) policyServed(ctx context.Context, r dnsrecords.Record) {
	host := "mta-sts." + r.Domain
	where := "https://" + host + mtasts.Path
	served := len(d.Config.HTTPS.Listen) > 0 // by Sluice, else by another web server
	var addrs []netip.Addr
	for _, network := range []string{"ip4", "ip6"} {
		a, _ := d.Resolver.LookupNetIP(ctx, network, host)
		addrs = append(addrs, a...)
	}
	if len(addrs) == 0 {
		if !served { // else the check of the mta-sts CNAME says so
			d.add(Error, "MTA-STS", where, "%s has no address: senders cannot fetch the policy", host).
				fix("publish an A/AAAA (or CNAME) record of " + host + " for the web server that serves the policy")
		}
		return
	}
	want, _ := d.Config.MTASTSPolicy()
	body, leaf, err := d.fetchPolicy(ctx, r.Domain)
	if err != nil {
		f := d.add(Error, "MTA-STS", where, "senders cannot fetch the policy: %v", err)
		_, certErr := errors.AsType[*tls.CertificateVerificationError](err)
		_, nameErr := errors.AsType[x509.HostnameError](err)
		_, unknownCA := errors.AsType[x509.UnknownAuthorityError](err)
		switch {
		case !certErr:
			if served {
				f.fix("[https] listen must be reachable on port 443 at " + joinAddrs(addrs))
			}
		case !served:
			f.fix("the web server at " + host + " must present a valid certificate for it from a CA senders trust")
		case d.Config.TLS.ACME && unknownCA:
			f.fix(acmeUntrusted)
		case d.Config.TLS.ACME:
			f.fix("Sluice gets the certificate of " + host + " at start: read the log's `acme:` lines; the CA must reach [https] listen on port 443 at " + joinAddrs(addrs))
		case nameErr:
			f.fix("the HTTPS listener presents smtp.tls_cert, which must also name " + host)
		default:
			f.fix("the HTTPS listener presents smtp.tls_cert: see the certificate findings")
		}
		return
	}
	got, err := mtasts.Parse(body)
	switch {
	case err != nil:
		d.add(Error, "MTA-STS", where, "the policy served is unusable: %v", err).fix(policyFix(served, want)...)
	case !samePolicy(got, want):
		d.add(Error, "MTA-STS", where, "the policy served (%s) is not the configuration's (%s): senders apply the one served", describePolicy(got), describePolicy(want)).
			fix(policyFix(served, want)...)
	default:
		d.add(OK, "MTA-STS", where, "serves the policy (%s)", describePolicy(got))
	}
	// An expired certificate failed the fetch above; one about to expire
	// soon will, and senders that cannot fetch the policy when their
	// cached one runs out deliver without it.
	if left := leaf.NotAfter.Sub(d.Now); left < ExpiryMargin {
		renew := "the web server at " + host + " must renew its certificate"
		switch {
		case served && d.Config.TLS.ACME:
			renew = "renewal is failing: read the log's `acme:` lines (sluice_acme_failures_total counts them); the CA must reach [https] listen on port 443 at " + joinAddrs(addrs)
		case served:
			renew = "the HTTPS listener presents smtp.tls_cert: renew it, or set [tls] acme = true (renewed automatically)"
		}
		d.add(Error, "MTA-STS", where, "the certificate of %s expires on %s, in %d days: renewal is due and has not happened, and senders cannot fetch the policy once it has expired",
			host, leaf.NotAfter.UTC().Format("2006-01-02 15:04 UTC"), int(left.Hours()/24)).fix(renew)
	}
}

// fetchPolicy gets the policy file as senders do, with mtasts.Getter,
// and the certificate it was served with.
func (d *doctor) fetchPolicy(ctx context.Context, domain string) (string, *x509.Certificate, error) {
	g := mtasts.NewGetter(mtasts.GetterConfig{Resolver: d.Resolver, RootCAs: d.Roots, Port: d.HTTPSPort,
		Timeout: policyTimeout, Time: func() time.Time { return d.Now }})
	return g.Get(ctx, domain)
}

// samePolicy compares what senders apply: the order of the mx lines
// does not matter.
func samePolicy(a, b mtasts.Policy) bool {
	return a.Mode == b.Mode && a.MaxAge == b.MaxAge &&
		slices.Equal(slices.Sorted(slices.Values(a.MX)), slices.Sorted(slices.Values(b.MX)))
}

func describePolicy(p mtasts.Policy) string {
	return fmt.Sprintf("mode %s, mx %s, max_age %d", p.Mode, strings.Join(p.MX, " "), int64(p.MaxAge/time.Second))
}

// policyFix is how the configuration's policy comes to be served.
func policyFix(served bool, want mtasts.Policy) []string {
	if served {
		return []string{"the running Sluice serves another configuration: reload it (systemctl reload sluice)"}
	}
	fix := []string{"serve this policy:"}
	for line := range strings.Lines(want.String()) {
		fix = append(fix, "  "+strings.TrimRight(line, "\r\n"))
	}
	return fix
}
