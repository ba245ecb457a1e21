package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The library reads a record term by term and stops at the first that
// matches, so a mistake after it goes unnoticed; RFC 7208 section 4.6 wants
// permerror for a syntax error anywhere in the record. checkRecord is that
// check, against the grammar of RFC 7208 section 12, run on every SPF record
// before the library sees it.

// isSPFRecord reports whether a TXT record is an SPF record (RFC 7208
// section 4.5): "v=spf1", in any case, alone or followed by a space.
func isSPFRecord(txt string) bool {
	const version = "v=spf1"
	return len(txt) >= len(version) && strings.EqualFold(txt[:len(version)], version) &&
		(len(txt) == len(version) || txt[len(version)] == ' ')
}

// checkRecord reports the first way an SPF record breaks the grammar.
func checkRecord(record string) error {
	terms := strings.Split(record, " ")[1:] // after the version
	seen := map[string]bool{}
	for _, term := range terms {
		if term == "" { // terms are separated by one or more spaces
			continue
		}
		name, value, isModifier := cutModifier(term)
		if !isModifier {
			if err := checkDirective(term); err != nil {
				return fmt.Errorf("%q: %w", term, err)
			}
			continue
		}
		var err error
		switch name = strings.ToLower(name); name {
		case "redirect", "exp":
			// RFC 7208 section 6: each at most once.
			if seen[name] {
				return fmt.Errorf("%s= given twice", name)
			}
			seen[name] = true
			err = checkDomainSpec(value)
		default:
			// Unknown modifiers are ignored, but must still parse.
			_, err = checkMacroString(value)
		}
		if err != nil {
			return fmt.Errorf("%q: %w", term, err)
		}
	}
	return nil
}

// cutModifier splits a modifier term into name and value. A term is a
// modifier if it starts with a name (ALPHA *(ALPHA / DIGIT / "-" / "_" /
// ".")) and "="; mechanisms never do.
func cutModifier(term string) (name, value string, ok bool) {
	for i := range len(term) {
		c := term[i]
		switch {
		case isAlpha(c):
		case i > 0 && (isDigit(c) || c == '-' || c == '_' || c == '.'):
		case i > 0 && c == '=':
			return term[:i], term[i+1:], true
		default:
			return "", "", false
		}
	}
	return "", "", false
}

// checkDirective checks [ qualifier ] mechanism.
func checkDirective(term string) error {
	if strings.ContainsRune("+-?~", rune(term[0])) {
		term = term[1:]
	}
	end := strings.IndexAny(term, ":/")
	if end < 0 {
		end = len(term)
	}
	mech, rest := strings.ToLower(term[:end]), term[end:]
	arg, hasArg := strings.CutPrefix(rest, ":")
	switch mech {
	case "all":
		if rest != "" {
			return errors.New("all takes nothing")
		}
	case "include", "exists":
		if !hasArg {
			return errors.New("needs :domain")
		}
		return checkDomainSpec(arg)
	case "ptr":
		if hasArg {
			return checkDomainSpec(arg)
		}
		if rest != "" {
			return errors.New("ptr takes only :domain")
		}
	case "a", "mx":
		domain, err := cutDualCIDR(rest)
		if err != nil {
			return err
		}
		if domain, hasArg = strings.CutPrefix(domain, ":"); hasArg {
			return checkDomainSpec(domain)
		}
		if domain != "" {
			return errors.New("bad CIDR length")
		}
	case "ip4", "ip6":
		if !hasArg {
			return errors.New("needs :address")
		}
		return checkNetwork(mech, arg)
	default:
		return errors.New("unknown mechanism")
	}
	return nil
}

// cutDualCIDR removes a trailing dual-cidr-length ("/n", "//n" or "/n//n")
// from s and checks it. A "/" that is not followed by digits to the end
// stays: a domain-spec may contain "/".
func cutDualCIDR(s string) (string, error) {
	if i := strings.LastIndex(s, "//"); i >= 0 && allDigits(s[i+2:]) {
		if !cidrLength(s[i+2:], 128) {
			return "", fmt.Errorf("bad IPv6 CIDR length %q", s[i+2:])
		}
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 && allDigits(s[i+1:]) {
		if !cidrLength(s[i+1:], 32) {
			return "", fmt.Errorf("bad IPv4 CIDR length %q", s[i+1:])
		}
		s = s[:i]
	}
	return s, nil
}

// checkNetwork checks the address and optional CIDR length of ip4: or ip6:.
func checkNetwork(mech, arg string) error {
	max := 32
	if mech == "ip6" {
		max = 128
	}
	addr, length, hasLength := strings.Cut(arg, "/")
	if hasLength && !cidrLength(length, max) {
		return fmt.Errorf("bad CIDR length %q", length)
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" || (mech == "ip4") != ip.Is4() {
		return fmt.Errorf("bad %s address %q", mech, addr)
	}
	return nil
}

// cidrLength reports whether s is a CIDR length of at most max, written
// without leading zeros.
func cidrLength(s string, max int) bool {
	if s == "" || !allDigits(s) || (len(s) > 1 && s[0] == '0') || len(s) > 3 {
		return false
	}
	n, _ := strconv.Atoi(s)
	return n <= max
}

// checkDomainSpec checks domain-spec = macro-string domain-end, where
// domain-end is a macro or "." toplabel [ "." ]. It is checked as written,
// before any expansion, as the RFC says.
func checkDomainSpec(s string) error {
	if s == "" {
		return errors.New("empty domain")
	}
	literalTail, err := checkMacroString(s)
	if err != nil {
		return err
	}
	if literalTail == "" { // ends with a macro
		return nil
	}
	tail := strings.TrimSuffix(literalTail, ".")
	dot := strings.LastIndexByte(tail, '.')
	if dot < 0 || !isTopLabel(tail[dot+1:]) {
		return errors.New("domain does not end in a top-level label")
	}
	return nil
}

// checkMacroString checks a macro-string (RFC 7208 section 7.1) and returns
// the literal text after its last macro. Domains may not use the macro
// letters c, r and t, which only explanation text may (section 7.2).
func checkMacroString(s string) (literalTail string, err error) {
	tailStart := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if c < '!' || c > '~' {
				return "", fmt.Errorf("character %q not allowed", c)
			}
			continue
		}
		if i+1 == len(s) {
			return "", errors.New("lone %")
		}
		i++
		switch s[i] {
		case '%', '_', '-':
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", errors.New("unterminated macro")
			}
			if !validMacro(s[i+1 : i+end]) {
				return "", fmt.Errorf("bad macro %q", s[i-1:i+end+1])
			}
			i += end
		default:
			return "", fmt.Errorf("bad macro %q", s[i-1:i+1])
		}
		tailStart = i + 1
	}
	return s[tailStart:], nil
}

// validMacro checks the inside of %{...}: macro-letter transformers
// *delimiter, where transformers = *DIGIT [ "r" ].
func validMacro(m string) bool {
	if m == "" || !strings.ContainsRune("slodiphvSLODIPHV", rune(m[0])) {
		return false
	}
	m = strings.TrimLeft(m[1:], "0123456789")
	if m != "" && (m[0] == 'r' || m[0] == 'R') {
		m = m[1:]
	}
	return strings.Trim(m, ".-+,/_=") == ""
}

// isTopLabel reports whether l is a toplabel: alphanumeric with at least
// one letter, or alphanumeric with inner hyphens.
func isTopLabel(l string) bool {
	if l == "" {
		return false
	}
	hasAlpha, hasHyphen := false, false
	for i := range len(l) {
		switch c := l[i]; {
		case isAlpha(c):
			hasAlpha = true
		case isDigit(c):
		case c == '-' && i > 0 && i < len(l)-1:
			hasHyphen = true
		default:
			return false
		}
	}
	return hasAlpha || hasHyphen
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func allDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
