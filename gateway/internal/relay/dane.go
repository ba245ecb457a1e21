package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// DANEResolver is what DANE (RFC 7672) needs from DNS beyond Resolver:
// whether each answer was DNSSEC-validated ("secure": the configured,
// trusted nameservers said so), and TLSA records. A secure NODATA is an
// empty result with secure true. Config.DANE needs a Resolver that is
// also a DANEResolver.
type DANEResolver interface {
	LookupMXSecure(ctx context.Context, name string) ([]*net.MX, bool, error)
	LookupNetIPSecure(ctx context.Context, network, host string) ([]netip.Addr, bool, error)
	LookupTLSA(ctx context.Context, name string) ([]*dns.TLSA, bool, error)
}

// TLSA fields (RFC 6698 section 7, RFC 7218 names).
const (
	usageDANETA    = 2
	usageDANEEE    = 3
	selectorCert   = 0
	selectorSPKI   = 1
	matchingFull   = 0
	matchingSHA256 = 1
	matchingSHA512 = 2
	tlsaPort       = 25
	tlsaTransport  = "tcp"
)

// daneHost is what DANE asks of the connections to one MX host whose TLSA
// records are secure: TLS always, and a certificate that matches one of
// the usable records. With none usable (all PKIX-TA/PKIX-EE, or unknown
// parameters), RFC 7672 §2.2 still asks for TLS, without authentication.
type daneHost struct {
	host   string // MX host name, the TLSA base domain and DANE-TA's reference identifier
	usable []tlsa
}

// tlsa is one usable TLSA record with its data decoded.
type tlsa struct {
	usage, selector, matching uint8
	data                      []byte
}

func (t tlsa) equal(u tlsa) bool {
	return t.usage == u.usage && t.selector == u.selector && t.matching == u.matching && bytes.Equal(t.data, u.data)
}

// lookupMX is Resolver.LookupMX, also saying whether the MX RRset was
// secure, which only a DANEResolver can tell.
func (r *Relay) lookupMX(ctx context.Context, domain string) ([]*net.MX, bool, error) {
	if r.dane != nil {
		return r.dane.LookupMXSecure(ctx, domain)
	}
	mxs, err := r.resolver.LookupMX(ctx, domain)
	return mxs, false, err
}

// lookupNetIP is Resolver.LookupNetIP, also saying whether the address
// records were secure.
func (r *Relay) lookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, bool, error) {
	if r.dane != nil {
		return r.dane.LookupNetIPSecure(ctx, network, host)
	}
	ips, err := r.resolver.LookupNetIP(ctx, network, host)
	return ips, false, err
}

// danePolicy returns what DANE asks of connections to host, nil when DANE
// does not apply to it, and use false when the host must not be used at
// all. secure says the MX RRset (or the NODATA that made the domain its
// own host) and host's address records were secure: RFC 7672 §2.2.1 and
// §2.2.2 look TLSA records up only then (an insecure MX RRset is allowed
// by §2.2.1, but then a forged MX could name any host; we follow Postfix
// and leave such destinations to the other TLS settings). Insecure TLSA
// records are ignored (§2.2); a failed lookup of them on a secure zone
// may be an attack that hides them, so the host is skipped (§2.2).
func (r *Relay) danePolicy(ctx context.Context, domain, host string, secure bool, tried *attempts) (dane *daneHost, use bool) {
	if r.dane == nil || !secure {
		return nil, true
	}
	name := fmt.Sprintf("_%d._%s.%s.", tlsaPort, tlsaTransport, host)
	records, recordsSecure, err := r.dane.LookupTLSA(ctx, name)
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
		return nil, true
	}
	if err != nil {
		// The records might ask for authentication: counted as DANE
		// would have checked them, and the reply is about DANE.
		r.tlsResult(requirement{policy: policyDANE, mode: Verify.String(), domain: domain, host: host}, netip.Addr{}, resultDNSSECInvalid)
		tried.policy = nameDANE
		tried.note(fmt.Sprintf("%s: TLSA lookup failed: %s", host, describe(err)))
		return nil, false
	}
	if !recordsSecure || len(records) == 0 {
		return nil, true
	}
	dane = &daneHost{host: host}
	for _, rr := range records {
		if t, ok := usableTLSA(rr); ok {
			dane.usable = append(dane.usable, t)
		}
	}
	return dane, true
}

// usableTLSA decodes rr if SMTP can use it (RFC 7672 §3.1): DANE-TA or
// DANE-EE (PKIX-TA and PKIX-EE are unusable, §3.1.3), selector Cert or
// SPKI, matching Full, SHA2-256 or SHA2-512, with data of the right size.
func usableTLSA(rr *dns.TLSA) (tlsa, bool) {
	t := tlsa{usage: rr.Usage, selector: rr.Selector, matching: rr.MatchingType}
	if t.usage != usageDANETA && t.usage != usageDANEEE || t.selector > selectorSPKI {
		return tlsa{}, false
	}
	data, err := hex.DecodeString(rr.Certificate)
	if err != nil || len(data) == 0 {
		return tlsa{}, false
	}
	switch {
	case t.matching == matchingFull,
		t.matching == matchingSHA256 && len(data) == sha256.Size,
		t.matching == matchingSHA512 && len(data) == sha512.Size:
		t.data = data
		return t, true
	}
	return tlsa{}, false
}

// matches reports whether cert is the one t names.
func (t tlsa) matches(cert *x509.Certificate) bool {
	b := cert.Raw
	if t.selector == selectorSPKI {
		b = cert.RawSubjectPublicKeyInfo
	}
	switch t.matching {
	case matchingSHA256:
		sum := sha256.Sum256(b)
		b = sum[:]
	case matchingSHA512:
		sum := sha512.Sum512(b)
		b = sum[:]
	}
	return bytes.Equal(b, t.data)
}

// verify checks the server's chain against the usable records: DANE-EE
// matches the leaf, with no check of name or dates (RFC 7672 §3.1.1);
// DANE-TA matches a certificate the server sent, from which the leaf must
// chain and be valid for the MX host name (§3.1.2, §3.2.2; the host name
// is the TLSA base domain, as CNAMEs of MX hosts are not followed here).
func (d *daneHost) verify(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	leaf := chain[0]
	var taErr error
	for _, t := range d.usable {
		if t.usage == usageDANEEE {
			if t.matches(leaf) {
				return nil
			}
			continue
		}
		for i, ca := range chain {
			if !t.matches(ca) {
				continue
			}
			// The anchor may be the leaf itself (a self-signed
			// server certificate published as DANE-TA): no
			// intermediates then, and the name and dates still count.
			if taErr = chainsTo(leaf, chain[1:max(i, 1)], ca, d.host); taErr == nil {
				return nil
			}
		}
	}
	if taErr != nil {
		return fmt.Errorf("DANE-TA: %w", taErr)
	}
	return errors.New("certificate matches no TLSA record")
}

// chainsTo checks that leaf chains through intermediates to the trust
// anchor ta, is valid now, and names host.
func chainsTo(leaf *x509.Certificate, intermediates []*x509.Certificate, ta *x509.Certificate, host string) error {
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err // an x509 error, which certificateResult names
}
