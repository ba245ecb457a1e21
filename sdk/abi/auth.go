package abi

// Aligned reports whether SPF or DKIM authenticated a domain aligned with
// the From domain: what a DMARC pass rests on.
func (d *DMARC) Aligned() bool { return d.SPFAligned || d.DKIMAligned }

// Authenticated reports whether SPF passed or any DKIM signature verified,
// whatever their domains: the message is vouched for by someone, though
// not necessarily by the domain in its From field.
func (a *Auth) Authenticated() bool {
	if a.SPF.Result == "pass" {
		return true
	}
	for _, d := range a.DKIM {
		if d.Result == "pass" {
			return true
		}
	}
	return false
}
