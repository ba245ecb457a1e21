// Package mtasts reads and writes MTA-STS (RFC 8461): the _mta-sts TXT
// record, the policy file, and the matching of MX hosts against a
// policy's patterns; the HTTPS listener serves what Policy.String writes.
// A Fetcher (fetch.go) finds, fetches and caches destinations' policies
// for the relay.
package mtasts

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Modes of a policy (RFC 8461 §3.2).
const (
	Enforce = "enforce"
	Testing = "testing"
	None    = "none"
)

// MaxAge is the longest max_age a policy may have: about a year.
const MaxAge = 31557600 * time.Second

// MaxPolicySize bounds a policy file; RFC 8461 §3.3 suggests 64 KiB.
const MaxPolicySize = 64 << 10

// Path is where a policy is served under https://mta-sts.<domain>.
const Path = "/.well-known/mta-sts.txt"

// Policy is one MTA-STS policy.
type Policy struct {
	Mode   string        // Enforce, Testing or None
	MX     []string      // patterns: host names, or "*." and a domain
	MaxAge time.Duration // whole seconds, at most MaxAge
}

// String is the policy file, each line ending in CRLF, version first.
func (p Policy) String() string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\n")
	b.WriteString("mode: " + p.Mode + "\r\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + mx + "\r\n")
	}
	b.WriteString("max_age: " + strconv.FormatInt(int64(p.MaxAge/time.Second), 10) + "\r\n")
	return b.String()
}

// ID is a policy id for the TXT record that changes whenever the policy
// does: senders refetch a policy only when its id changes, so deriving
// it from the content means an edited policy can never be missed.
func (p Policy) ID() string {
	sum := sha256.Sum256([]byte(p.String()))
	return hex.EncodeToString(sum[:10]) // 20 characters; at most 32 are allowed
}

// Record is the TXT record at _mta-sts.<domain> announcing p.
func (p Policy) Record() string { return "v=STSv1; id=" + p.ID() }

// Parse reads a policy file (RFC 8461 §3.2): LF or CRLF lines of
// "key: value"; unknown keys are ignored; version, mode and max_age must
// appear, and mx at least once unless the mode is none.
func Parse(text string) (Policy, error) {
	if len(text) > MaxPolicySize {
		return Policy{}, fmt.Errorf("policy is larger than %d bytes", MaxPolicySize)
	}
	var p Policy
	var version, maxAge string
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return Policy{}, fmt.Errorf("line %q is not \"key: value\"", line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "version":
			version = value
		case "mode":
			p.Mode = value
		case "max_age":
			maxAge = value
		case "mx":
			if err := checkPattern(value); err != nil {
				return Policy{}, err
			}
			p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(value, ".")))
		}
	}
	if version != "STSv1" {
		return Policy{}, fmt.Errorf("version is %q, not STSv1", version)
	}
	switch p.Mode {
	case Enforce, Testing:
		if len(p.MX) == 0 {
			return Policy{}, fmt.Errorf("mode %s without any mx", p.Mode)
		}
	case None:
	default:
		return Policy{}, fmt.Errorf("mode %q is not enforce, testing or none", p.Mode)
	}
	secs, err := strconv.ParseUint(maxAge, 10, 64)
	if err != nil || len(maxAge) > 10 {
		return Policy{}, fmt.Errorf("max_age %q is not a number of seconds", maxAge)
	}
	// RFC 8461 §3.2: at most 31557600; a longer one is read as that.
	p.MaxAge = min(time.Duration(min(secs, uint64(MaxAge/time.Second)))*time.Second, MaxAge)
	return p, nil
}

// checkPattern accepts a host name (letters, digits, hyphens and dots;
// IDNs in A-labels) or "*." followed by one.
func checkPattern(s string) error {
	host := strings.TrimSuffix(strings.TrimPrefix(s, "*."), ".")
	bad := host == "" || strings.HasPrefix(host, ".") || strings.Contains(host, "..") ||
		strings.ContainsFunc(host, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.')
		})
	if bad {
		return fmt.Errorf("mx %q is not a host name or *.domain", s)
	}
	return nil
}

// Matches reports whether the MX host (no trailing dot needed) is one the
// policy names: exactly, or by a wildcard standing for exactly one
// leftmost label (RFC 8461 §4.1).
func (p Policy) Matches(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pattern := range p.MX {
		if rest, ok := strings.CutPrefix(pattern, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
		} else if host == pattern {
			return true
		}
	}
	return false
}

// ErrNoRecord means no TXT record is an MTA-STS record.
var ErrNoRecord = errors.New("no MTA-STS record")

// ParseRecord finds the MTA-STS record among the TXT records of
// _mta-sts.<domain> and returns its id (RFC 8461 §3.1). Records that do
// not start with "v=STSv1" are ignored; more than one that does, or one
// without a valid id, is an error.
func ParseRecord(txts []string) (id string, err error) {
	found := 0
	for _, txt := range txts {
		if !strings.HasPrefix(txt, "v=STSv1;") && txt != "v=STSv1" {
			continue
		}
		found++
		id, err = recordID(txt)
	}
	switch {
	case found == 0:
		return "", ErrNoRecord
	case found > 1:
		return "", errors.New("more than one MTA-STS record")
	}
	return id, err
}

func recordID(txt string) (string, error) {
	for field := range strings.SplitSeq(txt, ";") {
		key, value, _ := strings.Cut(strings.TrimSpace(field), "=")
		if key != "id" {
			continue
		}
		if len(value) == 0 || len(value) > 32 || strings.ContainsFunc(value, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
		}) {
			return "", fmt.Errorf("id %q is not 1 to 32 letters and digits", value)
		}
		return value, nil
	}
	return "", errors.New("the MTA-STS record has no id")
}
