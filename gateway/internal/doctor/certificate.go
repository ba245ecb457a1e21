package doctor

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
)

// certificate checks the certificate STARTTLS presents: that it names
// each MX host that is this gateway (own), is not about to expire, and is
// one senders can verify.
func (d *doctor) certificate(own map[string]bool) {
	c := d.Config
	const acmeFix = "set [tls] acme = true (a certificate from Let's Encrypt, renewed automatically), or smtp.tls_cert and tls_key"
	var file string
	switch {
	case c.SMTP.TLSSelfSigned:
		d.add(Warn, "certificate", "smtp.tls_self_signed", "a self-signed certificate made at start: senders that verify (MTA-STS enforce, DANE) refuse it").fix(acmeFix)
		return
	case c.TLS.ACME:
		// autocert's DirCache: the file named after the host holds the
		// private key, then the chain, in PEM.
		file = filepath.Join(c.ACMEDir(), c.Hostname)
		if _, err := os.Stat(file); os.IsNotExist(err) {
			d.add(Warn, "certificate", file, "no certificate from the ACME CA yet: `sluice serve` gets one at start; run the doctor again after").
				fix("start sluice, with [https] listen reachable on port 443 for the CA's challenge")
			return
		}
	case c.SMTP.TLSCert != "":
		file = c.Path(c.SMTP.TLSCert)
	default:
		d.add(Warn, "certificate", c.Hostname, "no certificate: Sluice offers no STARTTLS, so mail to it travels in clear").fix(acmeFix)
		return
	}
	// With ACME the certificate is Sluice's to get and renew: the fix is
	// in what keeps it from doing so, not in setting acme = true.
	fixes := certFixes{
		read:    acmeFix,
		name:    func(mx string) string { return "get a certificate for " + mx + "; " + acmeFix },
		renew:   "renew it; " + acmeFix,
		chain:   "put the intermediate certificates after the certificate in the file; " + acmeFix,
		selfSig: acmeFix,
	}
	if c.TLS.ACME {
		fixes = certFixes{
			read: "run the doctor as the user Sluice runs as, who can read it: sudo -u sluice sluice doctor",
			name: func(mx string) string {
				return "ACME gets a certificate for hostname (" + c.Hostname + ") only: list only it in records.mx, or serve " + mx + " from a gateway of its own"
			},
			renew:   "renewal is failing: read the log's `acme:` lines (sluice_acme_failures_total counts them); the CA must reach [https] listen on port 443 at " + c.Hostname + "'s addresses",
			chain:   acmeUntrusted,
			selfSig: acmeUntrusted,
		}
	}
	chain, err := readChain(file)
	if err != nil {
		d.add(Error, "certificate", file, "%v", err).fix(fixes.read)
		return
	}
	leaf := chain[0]
	for _, mx := range c.MXHosts() {
		if !own[mx] {
			if addrs := d.mxAddrs[mx]; len(addrs) > 0 {
				d.add(OK, "certificate", mx, "another machine (%s, none of this gateway's addresses): its certificate is checked by sluice doctor there", joinAddrs(addrs))
			} else {
				d.add(Warn, "certificate", mx, "not checked: %s has no address to tell whether it is this gateway; if it is, publish its addresses, else sluice doctor checks it on its own machine", mx)
			}
			continue
		}
		if err := leaf.VerifyHostname(mx); err != nil {
			d.add(Error, "certificate", file, "does not name %s (it names %s): senders that verify refuse it", mx, strings.Join(leaf.DNSNames, ", ")).
				fix(fixes.name(mx))
		} else {
			d.add(OK, "certificate", file, "names %s", mx)
		}
	}
	left := leaf.NotAfter.Sub(d.Now)
	day := leaf.NotAfter.UTC().Format("2006-01-02 15:04 UTC")
	switch {
	case left <= 0:
		d.add(Error, "certificate", file, "expired on %s", day).fix(fixes.renew)
	case left < ExpiryMargin:
		d.add(Error, "certificate", file, "expires on %s, in %d days: renewal is due and has not happened", day, int(left.Hours()/24)).fix(fixes.renew)
	default:
		d.add(OK, "certificate", file, "valid until %s", day)
	}
	inter := x509.NewCertPool()
	for _, cert := range chain[1:] {
		inter.AddCert(cert)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: d.Roots, Intermediates: inter, CurrentTime: d.Now})
	switch {
	case err == nil:
		d.add(OK, "certificate", file, "issued by %s, which senders trust", leaf.Issuer.CommonName)
	case bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil:
		d.add(Warn, "certificate", file, "self-signed: senders that verify (MTA-STS enforce, DANE) refuse it").fix(fixes.selfSig)
	default:
		d.add(Warn, "certificate", file, "not verifiable: %v", err).fix(fixes.chain)
	}
}

// acmeUntrusted is the fix of an ACME certificate that does not verify.
// A private CA (a step-ca of the organisation, Pebble) is as good as a
// public one for the senders that trust it: the doctor cannot know which
// do, so the operator says so with -ca-file.
const acmeUntrusted = "tls.acme_directory is a CA senders do not trust (a staging directory?): remove it to use Let's Encrypt's; for a private CA that your senders trust, give its root to sluice doctor -ca-file"

// certFixes are the fixes of the certificate's findings, which depend on
// where it comes from.
type certFixes struct {
	read, renew, chain, selfSig string
	name                        func(mx string) string
}

// readChain reads the certificates of a PEM file, leaf first.
func readChain(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read the certificate: %v", err)
	}
	return certs.ParseChain(data)
}
