package relay

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

	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
)

// Security is how much TLS a connection to a destination has, or must
// have to carry a domain's mail. Each level includes the ones before.
type Security int

const (
	// May: STARTTLS when offered, the certificate unchecked, and
	// plaintext when the handshake fails (RFC 7435; Postfix's "may").
	// A plaintext connection has only this.
	May Security = iota
	// Encrypt: TLS, whatever the certificate.
	Encrypt
	// Verify: TLS with a certificate chain valid for the MX host name.
	Verify
)

// ParseSecurity reads "may", "encrypt" or "verify" ([relay] tls_security).
func ParseSecurity(s string) (Security, error) {
	for level := May; level <= Verify; level++ {
		if level.String() == s {
			return level, nil
		}
	}
	return May, fmt.Errorf("%q is not may, encrypt or verify", s)
}

func (s Security) String() string {
	switch s {
	case Encrypt:
		return "encrypt"
	case Verify:
		return "verify"
	}
	return "may"
}

// Policies, as TLSResult names them.
const (
	policyTLSSecurity = "tls_security"
	policyMTASTS      = "mta-sts"
	policyDANE        = "dane"
	policyRequireTLS  = "requiretls"
)

// How replies name the binding policy ("451 4.7.5 <domain>: DANE: ...").
// Constants, as every transaction's requirement carries one.
const (
	nameDANE          = "DANE"
	nameRequireTLS    = "REQUIRETLS" // a message's REQUIRETLS (RFC 8689)
	nameMTASTSEnforce = "MTA-STS policy (enforce)"
)

// nameFloor is how replies name each tls_security level.
var nameFloor = [...]string{May: "tls_security may", Encrypt: "tls_security encrypt", Verify: "tls_security verify"}

// Results of a TLS check under a policy, as TLSResult names them: the
// result types of TLS reporting (RFC 8460 §4.3).
const (
	resultOK            = "ok"
	resultNoSTARTTLS    = "starttls-not-supported"
	resultHostMismatch  = "certificate-host-mismatch"
	resultExpired       = "certificate-expired"
	resultNotTrusted    = "certificate-not-trusted"
	resultFailed        = "validation-failure"
	resultMXNotInPolicy = "mx-not-in-policy" // ours: RFC 8460 has no type for an MX host the policy does not list
	resultTLSAInvalid   = "tlsa-invalid"     // DANE: the certificate matches no usable TLSA record
	resultDNSSECInvalid = "dnssec-invalid"   // DANE: the TLSA records of a signed zone could not be had
)

// tlsPolicy is the TLS policy for one destination domain, decided once per
// transaction: the configured floor, the domain's own MTA-STS policy and
// the message's REQUIRETLS. DANE, bound to MX hosts rather than the
// domain, joins in per host (forHost).
type tlsPolicy struct {
	domain string // the destination domain
	floor  Security
	sts    *mtasts.Policy // the domain's policy in enforce or testing mode; nil if none
	// requireTLS says the message asks for REQUIRETLS (RFC 8689): every
	// MX host must be authentic (mxSecure, or named by the MTA-STS
	// policy) and its connection verified, by DANE or the WebPKI.
	requireTLS bool
	mxSecure   bool // DNSSEC vouched for the MX RRset
	tlsReport  bool // the message is a TLS report (ForTLSReport)
}

// tlsReportKey marks a context whose transactions carry a TLS report.
type tlsReportKey struct{}

// ForTLSReport marks the transactions begun with ctx as carrying a TLS
// report (RFC 8460). RFC 8460 §3 wants reports delivered despite any
// TLS failure (telling the domain of it is their point: a domain whose
// broken certificate its own MTA-STS policy enforces would never get
// them) and kept out of the next report. So neither the domain's MTA-STS
// policy, its hosts' TLSA records nor tls_security apply to them
// (STARTTLS is still used when offered, unverified), and TLSResult is not
// told of their sessions.
func ForTLSReport(ctx context.Context) context.Context {
	return context.WithValue(ctx, tlsReportKey{}, true)
}

// tlsPolicyFor decides domain's TLS policy for a message that asks for
// REQUIRETLS or not; mxSecure says DNSSEC vouched for its MX RRset.
func (r *Relay) tlsPolicyFor(ctx context.Context, domain string, requireTLS, mxSecure bool) tlsPolicy {
	if ctx.Value(tlsReportKey{}) != nil {
		return tlsPolicy{domain: domain, floor: May, mxSecure: mxSecure, tlsReport: true}
	}
	p := tlsPolicy{domain: domain, floor: r.cfg.Security, requireTLS: requireTLS, mxSecure: mxSecure}
	if r.cfg.MTASTS != nil {
		if sts, ok := r.cfg.MTASTS.Policy(ctx, domain); ok && sts.Mode != mtasts.None {
			p.sts = sts
		}
	}
	return p
}

// enforcing reports whether the domain's MTA-STS policy is in enforce mode.
func (p tlsPolicy) enforcing() bool { return p.sts != nil && p.sts.Mode == mtasts.Enforce }

// skips reports whether host must not be tried at all: an enforced
// MTA-STS policy does not name it (RFC 8461 §4.1), or the message asks
// for REQUIRETLS and nothing vouches for the host (RFC 8689 §4.2.1: else
// a forged MX record could name any host, with a valid certificate).
func (p tlsPolicy) skips(host string) bool {
	return p.enforcing() && !p.sts.Matches(host) || p.requireTLS && !p.authentic(host)
}

// authentic reports whether host is known to be the domain's MX host:
// DNSSEC vouched for the MX RRset, or the domain's MTA-STS policy names it.
func (p tlsPolicy) authentic(host string) bool {
	return p.mxSecure || p.sts != nil && p.sts.Matches(host)
}

// skipReason says why skips left host out, for the reply.
func (p tlsPolicy) skipReason(host string) string {
	if p.enforcing() && !p.sts.Matches(host) {
		return "not in the MTA-STS policy"
	}
	return "REQUIRETLS: neither DNSSEC nor an MTA-STS policy vouches for it"
}

// name is the binding policy of the domain, as replies name it.
func (p tlsPolicy) name() string {
	if p.requireTLS {
		return nameRequireTLS
	}
	if p.enforcing() {
		return nameMTASTSEnforce
	}
	return nameFloor[p.floor]
}

// requirement is what a connection to one MX host must have to carry the
// domain's mail, and what is checked and reported about it.
type requirement struct {
	need  Security // connections with less are not used
	check Security // what is checked and reported; above need in testing mode
	// dane, if set, are the host's usable TLSA records: the certificate
	// must match one of them, whatever the WebPKI says.
	dane   *daneHost
	policy string // the policy reported (TLSResult), "" for none
	mode   string // its mode: enforce or testing, or the level asked
	listed bool   // whether the MTA-STS policy names the host
	name   string // the binding policy, for replies
	// leftOut says the host must not be tried at all (tlsPolicy.skips),
	// unless its TLSA records make up for it.
	leftOut bool
	// What TLSResult is told besides: the destination domain, the MX
	// host and the domain's MTA-STS policy (nil if none).
	domain, host string
	sts          *mtasts.Policy
	quiet        bool // TLSResult is not told: a TLS report's transaction
}

// refusing is req as a connection it refuses is counted: a testing-mode
// MTA-STS policy never refuses one, so what does is tls_security, whose
// level it needs.
func (req requirement) refusing() requirement {
	if req.mode == mtasts.Testing {
		req.policy, req.mode = policyTLSSecurity, req.need.String()
	}
	return req
}

// requirement decides what connections to host must have: tls_security,
// then the domain's MTA-STS policy, then the host's TLSA records, each
// taking precedence over the ones before when it applies. secure says
// DNSSEC vouched for the MX RRset and host's addresses (see danePolicy).
// use is false when host must not be tried: its TLSA lookup failed, or
// the MTA-STS policy leaves it out.
func (r *Relay) requirement(ctx context.Context, p tlsPolicy, host string, secure bool, tried *attempts) (req requirement, use bool) {
	if p.tlsReport {
		return p.forHost(host, nil), true // no TLSA records asked for
	}
	dane, ok := r.danePolicy(ctx, p.domain, host, secure, tried)
	if !ok {
		return requirement{}, false
	}
	req = p.forHost(host, dane)
	return req, !req.leftOut
}

// forHost is the requirement for host under the domain's policy p and
// dane, what DANE asks of the host (nil if nothing). A message with
// REQUIRETLS needs at least Verify, or a DANE match (RFC 8689 §4.2.1),
// from a host DNSSEC or the MTA-STS policy vouches for.
func (p tlsPolicy) forHost(host string, dane *daneHost) requirement {
	req := p.baseForHost(host, dane)
	req.domain, req.host, req.sts, req.quiet = p.domain, host, p.sts, p.tlsReport
	if p.requireTLS {
		req.name = nameRequireTLS
		req.leftOut = req.leftOut || !p.authentic(host)
		if req.dane == nil && req.need < Verify {
			req.need, req.check = Verify, Verify
			req.policy, req.mode = policyRequireTLS, Verify.String()
		}
	}
	return req
}

// baseForHost is forHost without REQUIRETLS.
func (p tlsPolicy) baseForHost(host string, dane *daneHost) requirement {
	if dane != nil && len(dane.usable) > 0 {
		// RFC 7672 §2.2: usable TLSA records of a secure zone decide,
		// over the WebPKI (and so over tls_security verify and MTA-STS,
		// which RFC 8461 §2 must not let override DANE). An MX host an
		// MTA-STS policy does not name is fine: DANE applies only when
		// DNSSEC vouched for the MX RRset, which is what the policy's
		// MX list stands in for.
		return requirement{need: Encrypt, check: Encrypt, dane: dane, listed: true,
			policy: policyDANE, mode: Verify.String(), name: nameDANE}
	}
	req := requirement{need: p.floor, check: p.floor, name: p.name(), listed: true}
	if p.floor > May {
		req.policy, req.mode = policyTLSSecurity, p.floor.String()
	}
	if p.sts != nil {
		req.policy, req.mode = policyMTASTS, p.sts.Mode
		req.check = Verify
		req.listed = p.sts.Matches(host)
		if p.enforcing() {
			req.need = Verify
			req.leftOut = !req.listed
		}
	}
	if dane != nil && req.need < Encrypt {
		// Only unusable TLSA records: TLS is still required, without
		// authentication (RFC 7672 §2.2). Where the domain's own
		// policy asks for TLS already, it stays the one reported.
		req = requirement{need: Encrypt, check: Encrypt, listed: true,
			policy: policyDANE, mode: Encrypt.String(), name: nameDANE}
	}
	return req
}

// tlsPolicyError is a connection that failed a TLS requirement.
type tlsPolicyError struct {
	result string // one of the result constants
	err    error
}

func (e *tlsPolicyError) Error() string { return e.err.Error() }
func (e *tlsPolicyError) Unwrap() error { return e.err }

// tlsConfig is the STARTTLS configuration for a connection to host under
// req. The certificate is always checked by the WebPKI, and what came of
// it kept in s with the chain: a connection may be reused for a domain
// that needs more than the one it was opened for, and testing-mode
// policies report it. The handshake fails when the certificate does not
// meet what req needs (certificateResult, the check the pool makes too).
func (r *Relay) tlsConfig(s *session, req requirement) *tls.Config {
	return &tls.Config{
		ServerName: s.host,
		// Checked by VerifyConnection instead, which may let it pass.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			s.peerCerts, s.verifyErr = cs.PeerCertificates, r.verify(cs, s.host)
			if result, err := s.certificateResult(req, req.need); result != resultOK {
				s.rejected = &tlsPolicyError{result: result, err: err}
				return s.rejected
			}
			return nil
		},
	}
}

// verify checks the destination's certificate chain against the roots,
// for the MX host name.
func (r *Relay) verify(cs tls.ConnectionState, host string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	opts := x509.VerifyOptions{DNSName: host, Roots: r.cfg.RootCAs, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// tlsResult says how far s falls short of level under req, as a result
// and an error for the reply, or resultOK.
func (s *session) tlsResult(req requirement, level Security) (string, error) {
	switch {
	case level == May:
		return resultOK, nil
	case s.tlsVersion == 0 && s.tlsErr != nil:
		return resultFailed, s.tlsErr
	case s.tlsVersion == 0:
		return resultNoSTARTTLS, errors.New("STARTTLS not offered")
	}
	return s.certificateResult(req, level)
}

// certificateResult says how far the certificate s was given falls short
// of level under req: under req.dane it must match the host's usable TLSA
// records (whatever the WebPKI says), else at Verify the WebPKI must vouch
// for it.
func (s *session) certificateResult(req requirement, level Security) (string, error) {
	switch {
	case req.dane != nil && len(s.daneMatched) > 0 && slices.EqualFunc(s.daneMatched, req.dane.usable, tlsa.equal):
		// Matched these very records before (see session.daneMatched).
	case req.dane != nil:
		if err := req.dane.verify(s.peerCerts); err != nil {
			// DANE-TA found its anchor, but the certificate is not
			// valid under it (name, dates, chain): named, and
			// described, as the WebPKI's failures are.
			if result, why := certFailure(s.host, err); result != resultFailed {
				return result, why
			}
			return resultTLSAInvalid, err
		}
		s.daneMatched = req.dane.usable
	case level >= Verify && s.verifyErr != nil:
		return certFailure(s.host, s.verifyErr)
	}
	return resultOK, nil
}

// meets reports whether s, an idle connection, has what req needs: the
// pool hands out only those. A connection opened under less (or before
// the host's TLSA records changed) is left for transactions that need
// less.
func (s *session) meets(req requirement) bool {
	result, _ := s.tlsResult(req, req.need)
	return result == resultOK
}

// certFailure names what is wrong with host's certificate, as a result
// and an error for the reply.
func certFailure(host string, err error) (string, error) {
	var hostErr x509.HostnameError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &hostErr):
		names := "no DNS names"
		if c := hostErr.Certificate; c != nil && len(c.DNSNames) > 0 {
			names = strings.Join(c.DNSNames, ", ")
		}
		return resultHostMismatch, fmt.Errorf("certificate not valid for %s (it is for %s)", host, names)
	case errors.As(err, &unknown):
		return resultNotTrusted, errors.New("certificate not signed by a trusted authority")
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return resultExpired, fmt.Errorf("certificate expired on %s", invalid.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return resultFailed, fmt.Errorf("certificate: %s", strings.TrimPrefix(err.Error(), "x509: "))
}

// judge reports what s has under req, before a transaction starts on it.
// A connection that lacks what req needs never gets here; one that lacks
// only what a testing-mode policy checks does, and is logged.
func (r *Relay) judge(req requirement, s *session) {
	if req.policy == "" {
		// Under no policy, told as what a policy asking for TLS
		// would have found (TLS reports count such sessions).
		result, _ := s.tlsResult(req, Encrypt)
		r.tlsResult(req, s.addr.Addr(), result)
		return
	}
	result, err := s.tlsResult(req, req.check)
	if !req.listed && result == resultOK {
		result, err = resultMXNotInPolicy, errors.New("not in the MTA-STS policy")
	}
	r.tlsResult(req, s.addr.Addr(), result)
	if err != nil {
		r.log.Warn("relay: TLS policy in testing mode not met; delivering anyway", "remote", s.remote(),
			"policy", req.policy, "result", result, "err", err)
	}
}

// TLSCheck is the result of a TLS check, as Config.TLSResult is told it.
type TLSCheck struct {
	// Policy is the policy checked: "tls_security", "mta-sts", "dane"
	// or "requiretls", or "" for a session under none; Mode its mode
	// ("encrypt", "verify"; "enforce", "testing").
	Policy, Mode string
	// Result is "ok" or what failed, as TLS reporting (RFC 8460 §4.3)
	// names it; under no policy, "ok" for a session with TLS.
	Result string
	Domain string     // the destination domain
	Host   string     // the MX host
	IP     netip.Addr // the host's address; invalid when none was tried
	// STS is the domain's MTA-STS policy, nil if none; TLSA the host's
	// usable TLSA records under DANE, as "usage selector matching hex".
	STS  *mtasts.Policy
	TLSA []string
}

// tlsResult tells Config.TLSResult the result of a check under req,
// with host's address ip.
func (r *Relay) tlsResult(req requirement, ip netip.Addr, result string) {
	if r.cfg.TLSResult == nil || req.quiet {
		return
	}
	c := TLSCheck{Policy: req.policy, Mode: req.mode, Result: result, Domain: req.domain, Host: req.host, IP: ip, STS: req.sts}
	if req.dane != nil {
		for _, t := range req.dane.usable {
			c.TLSA = append(c.TLSA, fmt.Sprintf("%d %d %d %x", t.usage, t.selector, t.matching, t.data))
		}
	}
	r.cfg.TLSResult(c)
}
