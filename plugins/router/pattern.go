package main

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// pattern is a rule that matches recipients by shape rather than by name:
// a wildcard local part at one domain ("sales-*@shop.test"), or a regular
// expression over the whole address. Its captures (each * of a wildcard,
// each group of an expression) can be put into the destination.
type pattern struct {
	// A wildcard: the literal runs of the local part between its stars,
	// in localForm, and its domain key.
	glob   []string
	domain string
	// An expression, anchored at both ends and ignoring case, and the part
	// of it after the @, which says at which domains it can match.
	re       *regexp.Regexp
	domainRE *regexp.Regexp
	// prefix and suffix are literals, in lower case, that every address
	// the expression matches starts and ends with: a test of an ASCII
	// address against them is much cheaper than the expression.
	prefix, suffix string
	// emptyCaps says, by group number, which groups of an expression can
	// capture "" (see emptyCaptures).
	emptyCaps []bool

	act action
}

// subject is a recipient in the forms patterns match.
type subject struct {
	form, nfc       string // the local part in localForm, and in its own case (the same length)
	domain, udomain string // the domain key and its U-label form, or ""
	// For expressions, made once for all of them: nfc@domain and
	// form@domain (lower), nfc@udomain if there is a udomain.
	addr, lower, uaddr string
	ascii              bool // addr is ASCII
}

func newSubject(form, nfc, domain, udomain string) *subject {
	s := &subject{form: form, nfc: nfc, domain: domain, udomain: udomain,
		addr: nfc + "@" + domain, lower: form + "@" + domain}
	s.ascii = isASCII(s.addr)
	if udomain != "" {
		s.uaddr = nfc + "@" + udomain
	}
	return s
}

// match reports whether the pattern matches the recipient and returns its
// captures, numbered from 1 (caps[0] is unused). A wildcard compares the
// local part's form and captures from nfc, so that what it puts in the
// destination is what the client sent.
func (p *pattern) match(s *subject) ([]string, bool) {
	if p.re == nil {
		if s.domain != p.domain {
			return nil, false
		}
		return matchGlob(p.glob, s.form, s.nfc)
	}
	if !s.ascii || strings.HasPrefix(s.lower, p.prefix) && strings.HasSuffix(s.lower, p.suffix) {
		if m := p.re.FindStringSubmatch(s.addr); m != nil {
			return m, true
		}
	}
	if s.uaddr != "" {
		if m := p.re.FindStringSubmatch(s.uaddr); m != nil {
			return m, true
		}
	}
	return nil, false
}

// canMatch reports whether the pattern can match addresses at the domain
// key d (whose U-label form is u, or "").
func (p *pattern) canMatch(d, u string) bool {
	if p.re == nil {
		return d == p.domain
	}
	return p.domainRE.MatchString(d) || u != "" && p.domainRE.MatchString(u)
}

// newGlob splits a wildcard local part into the literal runs between its
// stars.
func newGlob(local string) []string {
	return strings.Split(localForm(local), "*")
}

// matchGlob matches s against the runs of a wildcard: the first run must
// start s, the last end it, and each one between is found leftmost, so
// that each star but the last takes as little as it can. The captures are
// taken from orig at the offsets found in s.
func matchGlob(runs []string, s, orig string) ([]string, bool) {
	first, last := runs[0], runs[len(runs)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return nil, false
	}
	caps := make([]string, 1, len(runs))
	pos, end := len(first), len(s)-len(last)
	for _, run := range runs[1 : len(runs)-1] {
		i := strings.Index(s[pos:end], run)
		if i < 0 {
			return nil, false
		}
		caps = append(caps, orig[pos:pos+i])
		pos += i + len(run)
	}
	return append(caps, orig[pos:end]), true
}

// newRegexp compiles a rule's regular expression: it must match a whole
// address (it is anchored at both ends) and it ignores case, as all
// matching here does. It is refused if it cannot match at any of ours (the
// gateway's domains, when known): the gateway refuses mail for other
// domains before the router sees it.
func newRegexp(expr string, ours []string) (*pattern, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, fmt.Errorf("regex %q: %v", expr, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	re := regexp.MustCompile(`(?i)^(?:` + expr + `)$`)
	tree, err := syntax.Parse(`(?i)`+expr, syntax.Perl)
	if err != nil {
		return nil, err
	}
	prefix, suffix := literalEnds(tree)
	parts, ok := domainParts(tree)
	if !ok {
		return nil, fmt.Errorf("regex %q: needs a literal @ between the local part and the domain, as in ^(.+)-orders@shop\\.test$", expr)
	}
	alt := &syntax.Regexp{Op: syntax.OpAlternate, Sub: parts}
	if len(parts) == 1 {
		alt = parts[0]
	}
	domainRE, err := regexp.Compile(`^(?:` + alt.String() + `)$`)
	if err != nil {
		return nil, fmt.Errorf("regex %q: its domain part: %v", expr, err)
	}
	p := &pattern{re: re, domainRE: domainRE, prefix: prefix, suffix: suffix, emptyCaps: emptyCaptures(tree)}
	if len(ours) > 0 {
		for _, d := range ours {
			if domainRE.MatchString(d) || domainRE.MatchString(unicodeForm(d)) {
				return p, nil
			}
		}
		return nil, fmt.Errorf("regex %q can never match: its domain is none of this gateway's domains (%s), and mail for other domains never reaches the router", expr, strings.Join(ours, ", "))
	}
	return p, nil
}

// emptyCaptures returns, by group number, whether each group of re can
// capture "": its expression matches the empty string, or the group can
// take no part in a match (it is under ?, * or {0,n}, or in one branch of
// an alternative), which captures "" too. The answer errs towards "can":
// every assertion (^, $, \b) is taken as one that holds there.
func emptyCaptures(re *syntax.Regexp) []bool {
	empty := make([]bool, re.MaxCap()+1)
	var walk func(re *syntax.Regexp, optional bool)
	walk = func(re *syntax.Regexp, optional bool) {
		switch re.Op {
		case syntax.OpCapture:
			empty[re.Cap] = optional || nullable(re.Sub[0])
		case syntax.OpStar, syntax.OpQuest, syntax.OpAlternate:
			optional = true
		case syntax.OpRepeat:
			optional = optional || re.Min == 0
		}
		for _, sub := range re.Sub {
			walk(sub, optional)
		}
	}
	walk(re, false)
	return empty
}

// nullable reports whether re can match the empty string, taking every
// assertion as one that holds.
func nullable(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpStar, syntax.OpQuest, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	case syntax.OpLiteral:
		return len(re.Rune) == 0
	case syntax.OpCapture, syntax.OpPlus:
		return nullable(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min == 0 || nullable(re.Sub[0])
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !nullable(sub) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if nullable(sub) {
				return true
			}
		}
	}
	return false // a character, a class, or no match
}

// literalEnds returns the ASCII literals, in lower case, that every match
// of the expression re, anchored at both ends, starts and ends with ("" if
// none): its first and last parts if they are literals.
func literalEnds(re *syntax.Regexp) (prefix, suffix string) {
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	for len(subs) > 0 && (subs[0].Op == syntax.OpBeginText || subs[0].Op == syntax.OpBeginLine) {
		subs = subs[1:]
	}
	for len(subs) > 0 && (subs[len(subs)-1].Op == syntax.OpEndText || subs[len(subs)-1].Op == syntax.OpEndLine) {
		subs = subs[:len(subs)-1]
	}
	lit := func(r *syntax.Regexp) string {
		if r.Op != syntax.OpLiteral || !isASCII(string(r.Rune)) {
			return ""
		}
		return strings.ToLower(string(r.Rune))
	}
	if len(subs) > 0 {
		prefix, suffix = lit(subs[0]), lit(subs[len(subs)-1])
	}
	return prefix, suffix
}

// domainParts returns, for each way re matches an address, the part of it
// after the address's @: the last top-level literal @ splits an
// alternative. ok is false if an alternative has no such @.
func domainParts(re *syntax.Regexp) (parts []*syntax.Regexp, ok bool) {
	var subs []*syntax.Regexp
	switch re.Op {
	case syntax.OpAlternate:
		for _, alt := range re.Sub {
			p, ok := domainParts(alt)
			if !ok {
				return nil, false
			}
			parts = append(parts, p...)
		}
		return parts, true
	case syntax.OpCapture:
		return domainParts(re.Sub[0])
	case syntax.OpConcat:
		subs = re.Sub
	case syntax.OpLiteral:
		subs = []*syntax.Regexp{re}
	default:
		return nil, false
	}
	for i := len(subs) - 1; i >= 0; i-- {
		var heads []*syntax.Regexp // what comes after the @ within subs[i]
		switch sub := subs[i]; sub.Op {
		case syntax.OpLiteral:
			at := -1
			for j, r := range sub.Rune {
				if r == '@' {
					at = j
				}
			}
			if at < 0 {
				continue
			}
			heads = []*syntax.Regexp{{Op: syntax.OpLiteral, Rune: sub.Rune[at+1:], Flags: sub.Flags}}
		case syntax.OpCapture, syntax.OpConcat, syntax.OpAlternate:
			// ^(.+@shop\.test)$ has its @ inside a group.
			if heads, ok = domainParts(sub); !ok {
				continue
			}
		default:
			continue
		}
		for _, h := range heads {
			parts = append(parts, &syntax.Regexp{Op: syntax.OpConcat, Sub: append([]*syntax.Regexp{h}, subs[i+1:]...)})
		}
		return parts, true
	}
	return nil, false
}

// template is a forward rule's destination with references to the
// pattern's captures: $1 or ${1} for the first, ${name} for a named group
// of an expression, $$ for a dollar sign.
type template struct {
	lits   []string // lits[i] comes before groups[i]; one more lit than groups
	groups []int
}

// parseTemplate parses to, whose references must name one of the n
// numbered captures or a name that index knows (nil: no names).
func parseTemplate(to string, n int, index func(string) int) (*template, error) {
	t := &template{}
	var lit strings.Builder
	for i := 0; i < len(to); i++ {
		if to[i] != '$' {
			lit.WriteByte(to[i])
			continue
		}
		if i+1 < len(to) && to[i+1] == '$' {
			lit.WriteByte('$')
			i++
			continue
		}
		name, size := refName(to[i+1:])
		if name == "" {
			return nil, fmt.Errorf("to %q: a $ that names no capture (write $$ for a dollar sign)", to)
		}
		g, err := strconv.Atoi(name)
		switch {
		case err == nil && (g < 1 || g > n):
			return nil, fmt.Errorf("to %q: $%s is not a capture of the pattern, which has %d", to, name, n)
		case err != nil && (index == nil || index(name) < 0):
			return nil, fmt.Errorf("to %q: $%s is not a capture of the pattern (a number from 1 to %d, or a (?P<name>...) of the expression; write ${1}x for capture 1 followed by x)", to, name, n)
		case err != nil:
			g = index(name)
		}
		t.lits = append(t.lits, lit.String())
		t.groups = append(t.groups, g)
		lit.Reset()
		i += size
	}
	t.lits = append(t.lits, lit.String())
	return t, nil
}

// refName reads the name after a $ the way regexp.Expand does: {name}, or
// the longest run of letters, digits and underscores. size is how many
// bytes it took.
func refName(s string) (name string, size int) {
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 2 || !isName(s[1:end]) {
			return "", 0
		}
		return s[1:end], end + 1
	}
	n := 0
	for n < len(s) && isNameByte(s[n]) {
		n++
	}
	return s[:n], n
}

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return utf8.ValidString(s)
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// expand writes the destination for the captures caps (numbered from 1).
func (t *template) expand(caps []string) string {
	var b strings.Builder
	for i, g := range t.groups {
		b.WriteString(t.lits[i])
		b.WriteString(caps[g])
	}
	b.WriteString(t.lits[len(t.lits)-1])
	return b.String()
}

// fixedDomain returns the domain of the template's destinations if no
// capture makes any of it, else "".
func (t *template) fixedDomain() string {
	last := t.lits[len(t.lits)-1]
	i := strings.LastIndexByte(last, '@')
	if i < 0 {
		return ""
	}
	return last[i+1:]
}

// emptyCaptureFault finds a group of the expression that the template
// uses, that can capture "", and that leaves the template no address
// then: each recipient that leaves it empty would be deferred until it
// bounces. It returns the group's reference ($1, ${name}) and what is
// wrong with the address; err is nil if there is no such group. x holds
// "x" for every capture. Wildcards are not checked: a * can always match
// nothing, and the run-time check defers what no address comes of.
func (p *pattern) emptyCaptureFault(t *template, x []string) (ref string, err error) {
	if p.re == nil {
		return "", nil
	}
	for _, g := range t.groups {
		if !p.emptyCaps[g] {
			continue
		}
		caps := slices.Clone(x)
		caps[g] = ""
		if err := checkDestination(t.expand(caps)); err != nil {
			if name := p.re.SubexpNames()[g]; name != "" {
				return "${" + name + "}", err
			}
			return "$" + strconv.Itoa(g), err
		}
	}
	return "", nil
}
