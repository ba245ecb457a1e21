package dmarc

import (
	"errors"
	"net/url"
	"regexp"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
)

// record is a usable DMARC record: go-msgauth's, plus what go-msgauth does
// not know: the np tag (RFC 9091, RFC 9989) and RFC 9989's test mode.
type record struct {
	*dmarc.Record
	np dmarc.Policy // "" when absent
	// testing is RFC 9989's t=y, or an old record's pct=0 without t, which
	// RFC 9989's appendix on the removal of pct makes the same; always
	// false under RFC 7489.
	testing bool
}

// pct is the share of failing mail the policy is meant for (Result.Pct).
// RFC 9989 made pct historic and t its replacement, t=y and t=n being
// meant as pct=0 and pct=100: so 0 or 100.
func (r *record) pct(how Discovery) int {
	switch {
	case how == TreeWalk && r.testing:
		return 0
	case how == TreeWalk || r.Percent == nil:
		return 100
	}
	return *r.Percent
}

// tag is one "name=value" of a record, both trimmed, the name in lower case.
type tag struct{ name, value string }

// splitTags splits a record into its tags. A part without "=" is a syntax
// error, which RFC 7489 §6.3 says to ignore; of repeated tags the first
// counts.
func splitTags(txt string) []tag {
	var tags []tag
	seen := map[string]bool{}
	for part := range strings.SplitSeq(txt, ";") {
		name, value, ok := strings.Cut(part, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" || seen[name] {
			continue
		}
		seen[name] = true
		tags = append(tags, tag{name, strings.TrimSpace(value)})
	}
	return tags
}

// isDMARC1 reports whether a TXT record is a DMARC record: RFC 7489 §6.6.3
// discards any that does not start with "v=DMARC1".
func isDMARC1(txt string) bool {
	first, _, _ := strings.Cut(txt, ";")
	name, value, ok := strings.Cut(first, "=")
	return ok && strings.EqualFold(strings.TrimSpace(name), "v") && strings.TrimSpace(value) == "DMARC1"
}

var errNoPolicy = errors.New("p= is not none, quarantine or reject and rua= has no valid URI")

// psdOf is the psd tag of a record (RFC 9989): 'y', 'n', or 'u', the
// default, also for a bad value.
func psdOf(txt string) byte {
	for _, t := range splitTags(txt) {
		if t.name == "psd" {
			if v := strings.ToLower(t.value); v == "y" || v == "n" {
				return v[0]
			}
			break
		}
	}
	return 'u'
}

// parseRecord reads a record that isDMARC1. go-msgauth refuses a whole
// record for one bad tag; RFC 7489 §6.3 (and RFC 9989) say to use the
// default for a bad optional tag instead, so each optional tag is checked
// by go-msgauth on its own and left out if it is refused. A bad p= or sp=
// follows §6.6.3 (RFC 9989 §4.10.1 says the same): with a valid rua= the
// record counts as p=none (and a bad sp= is left out); without one the
// record is unusable. A missing p= is the same under RFC 7489, but RFC
// 9989 reads it as p=none. A bad np= is left out, so sp applies. t (test
// mode) counts only under RFC 9989, which also reads psd (see psdOf).
func parseRecord(txt string, how Discovery) (*record, error) {
	var p, sp, np dmarc.Policy
	pSeen, pValid, spValid, ruaValid := false, false, true, false
	tSeen, testing := false, false
	kept := []string{}
	for _, t := range splitTags(txt) {
		switch t.name {
		case "v", "psd":
		case "p":
			pSeen = true
			p, pValid = parsePolicy(t.value)
		case "sp":
			sp, spValid = parsePolicy(t.value)
		case "np":
			np, _ = parsePolicy(t.value)
		case "t":
			switch strings.ToLower(t.value) {
			case "y":
				tSeen, testing = true, true
			case "n":
				tSeen = true
			}
		case "adkim", "aspf":
			kept = appendIfValid(kept, t.name+"="+strings.ToLower(t.value))
		case "rua":
			ruaValid = hasValidURI(t.value)
			kept = appendIfValid(kept, t.name+"="+t.value)
		default:
			kept = appendIfValid(kept, t.name+"="+t.value)
		}
	}
	if !pSeen && how == TreeWalk {
		p, pValid = dmarc.PolicyNone, true
	}
	if !pValid || !spValid {
		if !ruaValid {
			return nil, errNoPolicy
		}
		if !pValid {
			p = dmarc.PolicyNone
		}
	}
	if sp != "" {
		kept = append(kept, "sp="+string(sp))
	}
	rec, err := dmarc.Parse("v=DMARC1; p=" + string(p) + "; " + strings.Join(kept, "; "))
	if err != nil { // cannot happen: every tag was accepted on its own
		return nil, err
	}
	r := &record{Record: rec, np: np}
	if how == TreeWalk {
		r.testing = testing || !tSeen && rec.Percent != nil && *rec.Percent == 0
	}
	return r, nil
}

// appendIfValid adds the tag "name=value" to kept if go-msgauth accepts it.
func appendIfValid(kept []string, tagText string) []string {
	if _, err := dmarc.Parse("v=DMARC1; p=none; " + tagText); err != nil {
		return kept
	}
	return append(kept, tagText)
}

// parsePolicy reads a p, sp or np value; the ABNF's strings are case-insensitive.
func parsePolicy(s string) (dmarc.Policy, bool) {
	switch p := dmarc.Policy(strings.ToLower(s)); p {
	case dmarc.PolicyNone, dmarc.PolicyQuarantine, dmarc.PolicyReject:
		return p, true
	}
	return "", false
}

// sizeLimit is the optional "!size" suffix of a reporting URI (RFC 7489 §6.4).
var sizeLimit = regexp.MustCompile(`![0-9]+[kmgtKMGT]?$`)

// hasValidURI reports whether a rua value holds at least one absolute URI.
func hasValidURI(list string) bool {
	for u := range strings.SplitSeq(list, ",") {
		u = sizeLimit.ReplaceAllString(strings.TrimSpace(u), "")
		parsed, err := url.Parse(u)
		if err == nil && parsed.Scheme != "" && (parsed.Opaque != "" || parsed.Host != "" || parsed.Path != "") {
			return true
		}
	}
	return false
}
