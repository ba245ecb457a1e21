// Package srs implements the Sender Rewriting Scheme: when Sluice forwards a
// message it replaces the envelope sender with an address at its own domain
// (so SPF at the destination checks Sluice, not the original sender), and
// when a bounce comes back to that address it recovers where the bounce
// should go.
//
// The address format, hash and timestamp are those of libsrs2 (used by
// postsrsd) and Perl's Mail::SRS Guarded scheme, so that any of them can
// reverse the addresses of the others given the same secret:
//
//	SRS0=HHHH=TT=orig-domain=orig-local@srs-domain
//	SRS1=HHHH=first-hop-domain==HHHH=TT=orig-domain=orig-local@srs-domain
package srs

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Reverse and Forward wrap them with detail; test with
// errors.Is.
var (
	// ErrNotSRS: the address is not an SRS address at this rewriter's domain.
	ErrNotSRS = errors.New("srs: not an SRS address for this domain")
	// ErrBadHash: the hash does not match any configured secret.
	ErrBadHash = errors.New("srs: hash does not match")
	// ErrExpired: the hash is genuine but the timestamp is older than MaxAge
	// (or from the future).
	ErrExpired = errors.New("srs: address has expired")
	// ErrMalformed: the address cannot be parsed as SRS, or cannot be
	// rewritten.
	ErrMalformed = errors.New("srs: malformed address")
)

const (
	// maxAddressLength is RFC 5321's limit on a path (§4.5.3.1.3: 256
	// octets) less its angle brackets.
	maxAddressLength = 254

	defaultMaxAge     = 21 * day
	defaultHashLength = 4
	// A base64 HMAC-SHA1 has 27 significant characters.
	maxHashLength = 27
	day           = 24 * time.Hour
)

// Config configures a Rewriter.
type Config struct {
	Domain     string           // the SRS domain, e.g. "your-domain.test"
	Secrets    []string         // first signs; all verify; at least one, non-empty
	MaxAge     time.Duration    // default 21 days when zero
	HashLength int              // default 4 when zero
	Now        func() time.Time // nil = time.Now; tests set it
}

// Rewriter rewrites senders into SRS addresses and back. It is safe for
// concurrent use.
type Rewriter struct {
	domain     string
	secrets    []*secret // the first signs; any verifies
	maxAgeDays int64
	hashLength int
	now        func() time.Time
}

// New validates c and returns a Rewriter.
func New(c Config) (*Rewriter, error) {
	if c.Domain == "" {
		return nil, errors.New("srs: Domain is empty")
	}
	if !validDomain(c.Domain) {
		return nil, fmt.Errorf("srs: Domain %q is not a domain name", c.Domain)
	}
	if len(c.Secrets) == 0 {
		return nil, errors.New("srs: no Secrets; at least one is needed to sign addresses")
	}
	secrets := make([]*secret, len(c.Secrets))
	for i, s := range c.Secrets {
		if s == "" {
			return nil, fmt.Errorf("srs: Secrets[%d] is empty", i)
		}
		secrets[i] = newSecret([]byte(s))
	}

	maxAge := c.MaxAge
	if maxAge == 0 {
		maxAge = defaultMaxAge
	}
	// Timestamps count days modulo 1024, so an age of 1024 days or more
	// cannot be told apart from a fresh address.
	if maxAge < day || maxAge >= timestampSlots*day {
		return nil, fmt.Errorf("srs: MaxAge %v is outside 24h..%v", c.MaxAge, (timestampSlots-1)*day)
	}

	hashLength := c.HashLength
	if hashLength == 0 {
		hashLength = defaultHashLength
	}
	// Below 4 characters a hash can be guessed in a few thousand tries.
	if hashLength < defaultHashLength || hashLength > maxHashLength {
		return nil, fmt.Errorf("srs: HashLength %d is outside %d..%d", c.HashLength, defaultHashLength, maxHashLength)
	}

	now := c.Now
	if now == nil {
		now = time.Now
	}
	return &Rewriter{
		domain:     c.Domain,
		secrets:    secrets,
		maxAgeDays: int64(maxAge / day),
		hashLength: hashLength,
		now:        now,
	}, nil
}

// Forward returns the SRS address at r's domain to use as envelope sender
// when forwarding mail from addr.
//
//   - "" (the null sender) stays "".
//   - An address at r's own domain is returned unchanged.
//   - An SRS0 address from another host becomes SRS1, naming that host as
//     the first hop; an SRS1 address keeps its first hop and is re-signed.
//   - Anything else becomes SRS0.
func (r *Rewriter) Forward(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	local, domain, ok := splitAddress(addr)
	if !ok {
		return "", fmt.Errorf("%w: %q has no @", ErrMalformed, addr)
	}
	if local == "" {
		return "", fmt.Errorf("%w: %q has an empty local part", ErrMalformed, addr)
	}
	if !validDomain(domain) {
		return "", fmt.Errorf("%w: %q does not end in a domain name", ErrMalformed, addr)
	}
	if equalFoldASCII(domain, r.domain) {
		return addr, nil
	}
	if !validLocal(local) {
		return "", fmt.Errorf("%w: the local part of %q cannot be carried in an SRS address", ErrMalformed, addr)
	}

	var out string
	switch tag(local) {
	case "SRS0":
		// Keep the previous forwarder's address whole (including its
		// separator) so that it can reverse it; we cannot check its hash.
		rest := local[len("SRS0"):]
		out = r.srs1(domain, rest)
	case "SRS1":
		firstHop, rest, ok := splitSRS1(local)
		if !ok {
			return "", fmt.Errorf("%w: %q is an SRS1 address without first hop and address", ErrMalformed, addr)
		}
		out = r.srs1(firstHop, rest)
	default:
		out = r.srs0(domain, local)
	}
	// Bounces to a longer address would be refused, by us among others:
	// better the sender hears now than its bounces vanish later.
	if len(out) > maxAddressLength {
		return "", fmt.Errorf("%w: %q would become %d octets, more than an SMTP path allows (%d)", ErrMalformed, addr, len(out), maxAddressLength)
	}
	return out, nil
}

func (r *Rewriter) srs0(domain, local string) string {
	stamp := timestamp(r.days())
	hash := r.hash(r.secrets[0], stamp, domain, local)
	return "SRS0=" + hash + "=" + stamp + "=" + domain + "=" + local + "@" + r.domain
}

// rest is what follows "SRS0" in the first hop's local part, separator
// included, exactly as libsrs2 and Mail::SRS hash it.
func (r *Rewriter) srs1(firstHop, rest string) string {
	hash := r.hash(r.secrets[0], firstHop, rest)
	return "SRS1=" + hash + "=" + firstHop + "=" + rest + "@" + r.domain
}

// Reverse returns where a bounce sent to the SRS address addr must go: the
// original sender for SRS0, or the first hop's SRS0 address for SRS1.
func (r *Rewriter) Reverse(addr string) (string, error) {
	local, domain, ok := splitAddress(addr)
	if !ok || !equalFoldASCII(domain, r.domain) {
		return "", fmt.Errorf("%w: %q is not at %s", ErrNotSRS, addr, r.domain)
	}
	switch tag(local) {
	case "SRS0":
		return r.reverseSRS0(addr, local)
	case "SRS1":
		return r.reverseSRS1(addr, local)
	}
	return "", fmt.Errorf("%w: the local part of %q does not start with SRS0 or SRS1", ErrNotSRS, addr)
}

func (r *Rewriter) reverseSRS0(addr, local string) (string, error) {
	hash, stamp, domain, user, ok := splitSRS0(local)
	if !ok {
		return "", fmt.Errorf("%w: %q lacks a hash, timestamp, domain or local part", ErrMalformed, addr)
	}
	then, ok := parseTimestamp(stamp)
	if !ok {
		return "", fmt.Errorf("%w: %q has the invalid timestamp %q", ErrMalformed, addr, stamp)
	}
	// The hash first: an address we did not make is a forgery, whatever its
	// age; only genuine addresses are reported as expired.
	if !r.verify(hash, stamp, domain, user) {
		return "", fmt.Errorf("%w: %q was not made with any configured secret", ErrBadHash, addr)
	}
	if age := ageDays(r.days(), then); age > r.maxAgeDays {
		return "", fmt.Errorf("%w: %q is %d days old, the limit is %d", ErrExpired, addr, age, r.maxAgeDays)
	}
	return user + "@" + domain, nil
}

func (r *Rewriter) reverseSRS1(addr, local string) (string, error) {
	hash, firstHop, rest, ok := splitSRS1Hash(local)
	if !ok {
		return "", fmt.Errorf("%w: %q lacks a hash, first hop or address", ErrMalformed, addr)
	}
	if !r.verify(hash, firstHop, rest) {
		return "", fmt.Errorf("%w: %q was not made with any configured secret", ErrBadHash, addr)
	}
	return "SRS0" + rest + "@" + firstHop, nil
}

// IsSRS reports whether addr's local part starts with SRS0 or SRS1 followed
// by a separator (=, + or -), in any case. It does not check the hash.
func IsSRS(addr string) bool {
	local, _, ok := splitAddress(addr)
	if !ok {
		local = addr
	}
	return tag(local) != ""
}

func (r *Rewriter) days() int64 {
	return r.now().Unix() / int64(day/time.Second)
}

// splitAddress splits at the last @: a domain never contains one, while a
// (quoted) local part might.
func splitAddress(addr string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", "", false
	}
	return addr[:at], addr[at+1:], true
}

// tag returns "SRS0" or "SRS1" if local starts with that tag, in any case,
// followed by one of the separators libsrs2 accepts; else "".
func tag(local string) string {
	if len(local) < 5 || !equalFoldASCII(local[:3], "SRS") || !strings.ContainsRune("=+-", rune(local[4])) {
		return ""
	}
	switch local[3] {
	case '0':
		return "SRS0"
	case '1':
		return "SRS1"
	}
	return ""
}

// equalFoldASCII is strcasecmp, as libsrs2 uses: Unicode folding would let
// "ſluice.test" (long s) pass for "sluice.test".
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// splitSRS0 splits "SRS0=hash=stamp=domain=user"; the user keeps any
// further '='. The separator after the tag may be any of "=+-"; the rest
// are always '='.
func splitSRS0(local string) (hash, stamp, domain, user string, ok bool) {
	parts := strings.SplitN(local[5:], "=", 4)
	if len(parts) != 4 {
		return "", "", "", "", false
	}
	for _, p := range parts {
		if p == "" {
			return "", "", "", "", false
		}
	}
	return parts[0], parts[1], parts[2], parts[3], true
}

// splitSRS1Hash splits "SRS1=hash=firsthop=rest".
func splitSRS1Hash(local string) (hash, firstHop, rest string, ok bool) {
	parts := strings.SplitN(local[5:], "=", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// splitSRS1 is splitSRS1Hash for forwarding: the old hash is someone
// else's and is dropped unchecked, so it may be empty.
func splitSRS1(local string) (firstHop, rest string, ok bool) {
	parts := strings.SplitN(local[5:], "=", 3)
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return "", "", false
	}
	return parts[1], parts[2], true
}

// validDomain accepts host names (ASCII or UTF-8 labels). It rejects what
// would break the SRS format ('=' is the separator) or the address ('@',
// spaces, brackets of address literals).
func validDomain(d string) bool {
	if d == "" {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch {
		case c >= 0x80, c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// validLocal rejects local parts that would need quoting inside the SRS
// address (RFC 5322 specials, spaces, controls): the SRS address is itself
// an unquoted local part. '.' and '=' are fine; UTF-8 is fine (SMTPUTF8).
func validLocal(l string) bool {
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte(`"\()<>[]:;@,`, c) >= 0 {
			return false
		}
	}
	return true
}
