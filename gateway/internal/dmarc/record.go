package dmarc

import (
	"errors"
	"net/url"
	"regexp"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
)

// record is a usable DMARC record: go-msgauth's, plus the np tag of RFC 9091
// that go-msgauth does not know.
type record struct {
	*dmarc.Record
	np dmarc.Policy // "" when absent
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

// parseRecord reads a record that isDMARC1. go-msgauth refuses a whole
// record for one bad tag; RFC 7489 §6.3 says to use the default for a bad
// optional tag instead, so each optional tag is checked by go-msgauth on its
// own and left out if it is refused. A bad p= or sp= follows §6.6.3: with a
// valid rua= the record counts as p=none (and a bad sp= is left out);
// without one the record is unusable. A bad np= is left out, so sp applies.
func parseRecord(txt string) (*record, error) {
	var p, sp, np dmarc.Policy
	pValid, spValid, ruaValid := false, true, false
	kept := []string{}
	for _, t := range splitTags(txt) {
		switch t.name {
		case "v":
		case "p":
			p, pValid = parsePolicy(t.value)
		case "sp":
			sp, spValid = parsePolicy(t.value)
		case "np":
			np, _ = parsePolicy(t.value)
		case "adkim", "aspf":
			kept = appendIfValid(kept, t.name+"="+strings.ToLower(t.value))
		case "rua":
			ruaValid = hasValidURI(t.value)
			kept = appendIfValid(kept, t.name+"="+t.value)
		default:
			kept = appendIfValid(kept, t.name+"="+t.value)
		}
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
	return &record{Record: rec, np: np}, nil
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
