package auth

import (
	"fmt"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// Results renders what a Report found as the result list of an
// Authentication-Results field (RFC 8601 §2.2), without the authserv-id:
// "spf=pass smtp.mailfrom=a@example.org; dkim=pass header.d=...; ...". The
// same list goes into our ARC-Authentication-Results. mailFrom is the
// envelope sender as given ("" for the null sender); helo the client's.
//
// fromPlugins are entries plugins recorded ("dmarc=fail (...) ..."): one
// for a method we report replaces ours, so that a plugin which overrode a
// policy can say so; others are added at the end.
func (r *Report) Results(mailFrom, helo string, fromPlugins ...string) string {
	parts := r.ownResults(mailFrom, helo)
	for _, p := range fromPlugins {
		replaced := false
		for i := range parts {
			if method(parts[i]) == method(p) {
				parts[i], replaced = p, true
				break
			}
		}
		if !replaced {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// method is the method name of a resinfo entry: what comes before "=".
func method(resinfo string) string {
	m, _, _ := strings.Cut(strings.TrimSpace(resinfo), "=")
	return strings.ToLower(strings.TrimSpace(m))
}

func (r *Report) ownResults(mailFrom, helo string) []string {
	var parts []string
	a := &r.Auth
	if a.SPF.Result != "" {
		p := "spf=" + a.SPF.Result
		if mailFrom != "" {
			p += " smtp.mailfrom=" + pvalue(mailFrom)
		} else {
			p += " smtp.helo=" + pvalue(helo)
		}
		parts = append(parts, p)
	}
	if len(r.dkim) == 0 {
		parts = append(parts, "dkim=none")
	}
	for _, d := range r.dkim {
		p := "dkim=" + d.Result + comment(d.Reason)
		if d.Domain != "" {
			p += " header.d=" + pvalue(d.Domain)
		}
		if d.Selector != "" {
			p += " header.s=" + pvalue(d.Selector)
		}
		if d.Algorithm != "" {
			p += " header.a=" + pvalue(d.Algorithm)
		}
		parts = append(parts, p)
	}
	if a.ARC.Result != "" {
		p := "arc=" + a.ARC.Result + comment(a.ARC.Reason)
		// Only a chain some of whose older signatures no longer verify
		// has an oldest pass worth naming (RFC 8617 §7.2).
		if a.ARC.Result == "pass" && a.ARC.OldestPass > 1 {
			p += fmt.Sprintf(" header.oldest-pass=%d", a.ARC.OldestPass)
		}
		parts = append(parts, p)
	}
	if d := a.DMARC; d.Result != "" {
		c := d.Reason
		if d.Policy != "" {
			c = "p=" + d.Policy + ", " + c
		}
		p := "dmarc=" + d.Result + comment(c)
		if d.FromDomain != "" {
			p += " header.from=" + pvalue(d.FromDomain)
		}
		parts = append(parts, p)
	}
	return parts
}

// comment renders text as an RFC 5322 comment, keeping it balanced.
func comment(text string) string {
	text = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		switch r {
		case '(', ')', '\\', '\r', '\n':
			return ' '
		}
		return r
	}, text)), " ")
	if text == "" {
		return ""
	}
	return " (" + text + ")"
}

// pvalue quotes a property value unless it is a plain token, a domain or
// local-part@domain of token characters (RFC 8601 §2.2, RFC 2045 token).
func pvalue(s string) string {
	if s != "" && !strings.ContainsAny(s, "()<>,;:\\\"/[]?= \t") && !hasControl(s) {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// StripForged removes what only we may write: Authentication-Results
// fields that claim our authserv-id (nobody upstream may speak for us, RFC
// 8601 §5) and fields named X-Sluice-*, which carry our plugins' marks
// (quarantine, DMARC overrides). Fields of other authserv-ids are others'
// claims and stay. A header with nothing to remove, as nearly every one
// is, comes back as it is; otherwise a view of it without those fields.
func StripForged(header *message.Header, authServID string) *message.Header {
	ours := func(name string, f message.Field) bool {
		return strings.EqualFold(name, "Authentication-Results") && strings.EqualFold(authServIDOf(f.Raw), authServID) ||
			len(name) > 9 && strings.EqualFold(name[:9], "X-Sluice-")
	}
	// The name as written (plugins read it so) and as the most lenient
	// reader takes it: a name with a vertical tab or form feed around it
	// is no field name, but a next hop (or DKIM code) that trims every
	// space sees ours.
	forged := func(f message.Field) bool {
		return ours(f.Name, f) || ours(strings.TrimSpace(f.Name), f)
	}
	return header.WithoutFunc(forged)
}

// authServIDOf returns the authserv-id of a whole Authentication-Results
// field: the first word of its value once comments and folding are gone.
func authServIDOf(raw []byte) string {
	v := string(raw)
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	v = b.String()
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	fields := strings.Fields(v)
	if len(fields) == 0 {
		return ""
	}
	return strings.Trim(fields[0], `"`)
}
