package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// settings is the plugin's config table.
type settings struct {
	// TrustedARCSealers are the intermediaries (ARC-Seal d= domains) whose
	// sealed chain overrides a DMARC failure.
	TrustedARCSealers []string `toml:"trusted_arc_sealers"`
	// RequireAuthentication refuses mail that passes neither SPF nor any
	// DKIM signature, whatever its DMARC result.
	RequireAuthentication bool `toml:"require_authentication"`
	// OnTemperror is "tempfail" (the default) or "accept".
	OnTemperror string `toml:"on_temperror"`
}

// resultsField is how a plugin records a result: the gateway folds the
// entries of a field added under this name into its own
// Authentication-Results, where a dmarc entry replaces the gateway's.
const resultsField = "Authentication-Results"

// The DMARC policies, in increasing severity.
const (
	policyNone       = "none"
	policyQuarantine = "quarantine"
	policyReject     = "reject"
)

// policy is the validated configuration: what to do with each message
// given what the gateway found about it.
type policy struct {
	trusted     map[string]bool // sealer domains, lower case, without a final dot
	requireAuth bool
	tempfail    bool // on_temperror = "tempfail"
}

func newPolicy(s settings) (*policy, error) {
	p := &policy{trusted: make(map[string]bool), requireAuth: s.RequireAuthentication}
	switch s.OnTemperror {
	case "", "tempfail":
		p.tempfail = true
	case "accept":
	default:
		return nil, fmt.Errorf("on_temperror %q: must be \"tempfail\" or \"accept\"", s.OnTemperror)
	}
	for _, raw := range s.TrustedARCSealers {
		d, ok := domainName(raw)
		if !ok {
			return nil, fmt.Errorf("trusted_arc_sealers: %q is not a domain name", raw)
		}
		if p.trusted[d] {
			return nil, fmt.Errorf("trusted_arc_sealers: %q is listed twice", raw)
		}
		p.trusted[d] = true
	}
	return p, nil
}

// permissions declares what this configuration can do, and no more. Reject
// and quarantine are always possible: the senders' records decide.
func (p *policy) permissions() abi.Permissions {
	perms := abi.MayReject | abi.MayQuarantine
	if p.tempfail {
		perms |= abi.MayTempfail
	}
	if len(p.trusted) > 0 {
		perms |= abi.MayAddHeaders
	}
	return perms
}

// decide is the verdict for a message at the data stage. A DMARC reject
// is answered before require_authentication because its reply says more;
// a trusted ARC chain lifts the DMARC policy only, since its sealer vouches
// for an author's alignment, not for mail nobody authenticated.
func (p *policy) decide(req *sdk.Request) sdk.Verdict {
	a := &req.Auth
	d := &a.DMARC
	if d.Result == "temperror" && p.tempfail {
		return sdk.Tempfail(451, "4.7.1", fmt.Sprintf("Cannot check %s's DMARC policy now%s, try again later",
			name(d.FromDomain), parenthesised(d.Reason)))
	}
	v := sdk.Continue()
	applied := disposition(req)
	if applied != policyNone {
		if sealers, ok := p.vouching(&a.ARC); ok {
			v = v.AddHeader(resultsField, overrideResult(applied, sealers, d.FromDomain))
			applied = policyNone
		}
	}
	from := name(d.FromDomain)
	if applied == policyReject {
		return sdk.Reject(550, "5.7.1", fmt.Sprintf(
			"Message rejected: %s's DMARC policy is reject and neither SPF nor DKIM aligned with %s", from, from))
	}
	if p.requireAuth && !a.Authenticated() {
		if !temporary(a) {
			return sdk.Reject(550, "5.7.26", fmt.Sprintf(
				"Unauthenticated email from %s is not accepted: it passes neither SPF nor DKIM", sender(req)))
		}
		if p.tempfail {
			return sdk.Tempfail(451, "4.7.1", fmt.Sprintf(
				"Cannot authenticate email from %s now: SPF or DKIM had a temporary error, try again later", sender(req)))
		}
	}
	if applied == policyQuarantine {
		if d.Policy == policyReject {
			return sdk.Quarantine(fmt.Sprintf(
				"%s's DMARC policy is reject for %d%% of failing mail and quarantine for the rest; neither SPF nor DKIM aligned with %s",
				from, d.Pct, from))
		}
		return sdk.Quarantine(fmt.Sprintf(
			"%s's DMARC policy is quarantine and neither SPF nor DKIM aligned with %s", from, from))
	}
	return v
}

// disposition is the policy that applies to this message: none unless
// DMARC failed; else the domain's policy if the message is in its pct
// sample, or the next lower policy if not (RFC 7489 §6.6.4).
func disposition(req *sdk.Request) string {
	d := &req.Auth.DMARC
	if d.Result != "fail" {
		return policyNone
	}
	switch d.Policy {
	case policyReject:
		if inSample(req, d.Pct) {
			return policyReject
		}
		return policyQuarantine
	case policyQuarantine:
		if inSample(req, d.Pct) {
			return policyQuarantine
		}
	}
	return policyNone
}

// inSample reports whether the message is among the pct percent of failing
// mail that its domain's policy is applied to. The choice is a hash of the
// session and transaction rather than a random draw, so that every instance
// of the plugin, asked again about the same message, answers the same; a
// hash is as evenly spread as a draw, and a sender who cannot predict the
// gateway's session IDs cannot steer it.
func inSample(req *sdk.Request, pct uint32) bool {
	if pct >= 100 {
		return true
	}
	if pct == 0 {
		return false
	}
	h := sha256.New()
	for _, s := range append([]string{req.SessionID, req.MailFrom, strconv.FormatUint(req.Size, 10), req.Auth.DMARC.FromDomain}, req.Rcpts...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])%100 < uint64(pct)
}

// vouching returns the trusted sealers that an ARC override rests on, and
// whether there are such: the chain passed and every sealer from instance 1
// up to the oldest one whose message signature still verifies is trusted.
// Those are the hops that may have changed the message (breaking the
// author's DKIM or SPF), the first of them having recorded what the author's
// mail looked like on arrival; hops after the oldest pass changed nothing,
// which the signatures prove, so they need no trust. When the gateway gives
// no usable oldest pass, every sealer must be trusted.
func (p *policy) vouching(arc *abi.ARC) ([]string, bool) {
	if len(p.trusted) == 0 || arc.Result != "pass" || len(arc.Sealers) == 0 {
		return nil, false
	}
	n := len(arc.Sealers)
	if arc.OldestPass >= 1 && int(arc.OldestPass) <= n {
		n = int(arc.OldestPass)
	}
	var names []string
	for _, s := range arc.Sealers[:n] {
		d, _ := domainName(s)
		if !p.trusted[d] {
			return nil, false
		}
		if !slices.Contains(names, d) {
			names = append(names, d)
		}
	}
	return names, true
}

// temporary reports whether SPF or a DKIM signature could not be checked
// for a reason that may go away, so that a retry might pass.
func temporary(a *abi.Auth) bool {
	if a.SPF.Result == "temperror" {
		return true
	}
	for _, d := range a.DKIM {
		if d.Result == "temperror" {
			return true
		}
	}
	return false
}

// sender names who the mail claims to be from, for replies: the From
// domain, else the domain SPF checked.
func sender(req *sdk.Request) string {
	if d := req.Auth.DMARC.FromDomain; d != "" {
		return name(d)
	}
	if d := req.Auth.SPF.Domain; d != "" {
		return name(d)
	}
	return "this sender"
}

// name is a domain for a reply line, or words for a missing one.
func name(domain string) string {
	if domain == "" {
		return "the From domain"
	}
	return printable(domain)
}

func parenthesised(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + printable(reason) + ")"
}

// printable makes text that comes from the message safe for a reply line:
// the gateway treats a control character there as a broken plugin.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// domainName returns s in lower case without a final dot, and whether it
// is a plausible DNS name: dot-separated labels of letters, digits, hyphens
// and underscores.
func domainName(s string) (string, bool) {
	d := strings.ToLower(strings.TrimSuffix(s, "."))
	if d == "" || len(d) > 253 {
		return d, false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			return d, false
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
				return d, false
			}
		}
	}
	return d, true
}

// overrideResult is the dmarc entry that says a policy was not applied
// because trusted ARC sealers vouched for the message.
func overrideResult(policy string, sealers []string, from string) string {
	return fmt.Sprintf("dmarc=fail (p=%s not applied: trusted ARC sealer %s) header.from=%s",
		policy, strings.Join(sealers, ","), name(from))
}
