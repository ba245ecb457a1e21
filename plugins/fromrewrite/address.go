package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"strings"
	"unicode/utf8"
)

// A reply address stands for an author's address at the forwarding domain:
//
//	alice@example.org  ->  alice_at_example.org_<tag>@your-domain.test
//
// The local part is the author's local part, "_at_", the author's domain
// (A-labels, lower case) and "_" and a tag of tagLen characters. Nothing is
// escaped: only authors whose local part is a dot-atom get one, so the
// whole is a dot-atom too (a dot-atom neither starts nor ends with a dot,
// and "_at_" and "_" are atext), and a mail domain has no "_", so the last
// "_at_" is always the one we put there.
//
// The tag is an HMAC of the author's address with the plugin's secret, so
// that only addresses this plugin minted route back: anyone could otherwise
// write bob_at_victim.example@your-domain.test and have the gateway relay
// for them.
const (
	atSep  = "_at_"
	tagSep = "_"
	// tagLen base32 characters are 40 bits: a sender who guesses has a
	// chance in 2^40 per RCPT, and each guess is an SMTP command.
	tagLen = 8
	// maxAddress is the longest address a path may hold (RFC 5321
	// §4.5.3.1.3: a path is at most 256 octets with its angle brackets).
	maxAddress = 254
)

var tagEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// signer mints and checks reply addresses.
type signer struct {
	domain  string   // where reply addresses live: lower-case A-labels
	secrets [][]byte // the first mints; all check
}

// tag is the HMAC of address under secret, in lower case. It is computed
// over the address in ASCII lower case: a relay that changes the case of a
// local part (some do, though they should not) still gets its reply through.
func tag(secret []byte, address string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(asciiLower(address)))
	return strings.ToLower(tagEncoding.EncodeToString(m.Sum(nil)[:5]))
}

// mint returns the reply address for the author local@domain, and false
// if there is none: a local part that is not a dot-atom (a quoted string),
// one with non-ASCII characters when the session is not SMTPUTF8, a domain
// that is not a mail domain, or a result too long for a path. domain is in
// A-labels, lower case.
func (s *signer) mint(local, domain string, utf8OK bool) (string, bool) {
	if !dotAtom(local, utf8OK) || !mailDomain(domain) {
		return "", false
	}
	addr := local + atSep + domain + tagSep + tag(s.secrets[0], local+"@"+domain) + "@" + s.domain
	if len(addr) > maxAddress {
		return "", false
	}
	return addr, true
}

// reply returns the author's address that the reply address local (the
// local part of a recipient at s.domain) stands for. minted is false for
// a local part not in the form of a reply address; ok is false for one in
// the form whose tag is wrong: forged, or minted with a secret since
// dropped.
func (s *signer) reply(local string) (author string, minted, ok bool) {
	i := strings.LastIndex(local, tagSep)
	if i < 0 || len(local)-i-len(tagSep) != tagLen {
		return "", false, false
	}
	body, got := local[:i], asciiLower(local[i+len(tagSep):])
	j := strings.LastIndex(asciiLower(body), atSep)
	if j <= 0 || !mailDomain(asciiLower(body[j+len(atSep):])) {
		return "", false, false
	}
	author = body[:j] + "@" + body[j+len(atSep):]
	for _, secret := range s.secrets {
		if hmac.Equal([]byte(tag(secret, author)), []byte(got)) {
			return author, true, true
		}
	}
	return "", true, false
}

// dotAtom reports whether s is an RFC 5322 dot-atom: atext characters in
// runs separated by single dots. Non-ASCII characters are atext in
// internationalised mail (RFC 6532 §3.2), which needs SMTPUTF8.
func dotAtom(s string, utf8OK bool) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r >= utf8.RuneSelf:
			if !utf8OK || r == utf8.RuneError {
				return false
			}
		case r == '.':
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r):
		default:
			return false
		}
	}
	return true
}

// mailDomain reports whether d is a domain in lower-case A-labels that
// mail can be addressed to: letters, digits and hyphens in dot-separated
// labels (RFC 5321 §4.1.2), at least two labels.
func mailDomain(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

// asciiLower lowers ASCII letters only: a local part's non-ASCII letters
// are the author's, and Unicode case rules are not for addresses.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}
