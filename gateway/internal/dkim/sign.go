// Package dkim signs forwarded mail with DKIM (RFC 6376) and handles the
// signing keys: RSA (rsa-sha256) and Ed25519 (ed25519-sha256, RFC 8463).
package dkim

import (
	"crypto"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// The signer is written against RFC 6376 rather than on go-msgauth's
// dkim.Signer (which the tests use as an independent verifier), because that
// signer cannot do what Sluice needs: it reads the time from a package
// variable (so t= cannot follow SignerConfig.Now), writes h= as one unbroken
// word (an oversigned list runs far past 78 columns), and hashes the body
// again for every key.

// Key is one signing key and the selector its public key is published under,
// at <Selector>._domainkey.<Domain>.
type Key struct {
	// Domain is the d= domain of the key's signatures: "" or
	// SignerConfig.Domain for the gateway's own keys, another domain for
	// the keys of a domain we sign its own mail for (SignAs).
	Domain   string
	Selector string
	Signer   crypto.Signer // an RSA key (as LoadKey makes it: *rsa.PrivateKey, or OpenSSL's with the tag openssl) or ed25519.PrivateKey
}

// SignerConfig configures a Signer.
type SignerConfig struct {
	Domain  string        // the gateway's d= domain, whose DNS holds its public keys
	Keys    []Key         // one signature per key of the domains signed for, in this order
	Headers []string      // header field names to sign; nil = DefaultHeaders
	Expire  time.Duration // how long signatures stay valid (x=); 0 = no x= tag
	Now     func() time.Time
}

// DefaultHeaders is the list of header fields signed when
// SignerConfig.Headers is nil, chosen following RFC 6376 §5.4:
//
//   - The fields that carry what the recipient reads and replies to, which
//     RFC 5322 allows only once (From, Sender, Reply-To, To, Cc, Subject,
//     Date, Message-ID, In-Reply-To, References) and the MIME fields that
//     decide how the body is shown (MIME-Version, Content-Type,
//     Content-Transfer-Encoding), are listed twice. A name listed more times
//     than the field is present signs its absence (§5.4.2), so anyone adding
//     a second From or Subject below or above ours breaks the signature.
//   - Fields §5.4.1 recommends that may be absent or come from a list
//     (Resent-*, List-*, and List-Unsubscribe-Post, which RFC 8058 requires
//     to be signed) are listed once: present, they are signed; absent, they
//     cannot be added unnoticed.
//   - Trace and transport fields (Received, Return-Path, DKIM-Signature,
//     Authentication-Results, ARC-*) are left out: relays legitimately add
//     them after us.
var DefaultHeaders = []string{
	"From", "From",
	"Sender", "Sender",
	"Reply-To", "Reply-To",
	"To", "To",
	"Cc", "Cc",
	"Subject", "Subject",
	"Date", "Date",
	"Message-ID", "Message-ID",
	"In-Reply-To", "In-Reply-To",
	"References", "References",
	"MIME-Version", "MIME-Version",
	"Content-Type", "Content-Type",
	"Content-Transfer-Encoding", "Content-Transfer-Encoding",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive",
}

// Signer makes the DKIM-Signature header fields of the gateway's domain,
// and of the other domains it holds keys of for mail From there. It is
// safe for concurrent use.
type Signer struct {
	domain  string
	keys    []signingKey            // the gateway's domain's
	others  map[string][]signingKey // every other domain's, by lower-case name
	headers []string                // lower case, in h= order
	expire  time.Duration
	now     func() time.Time
}

type signingKey struct {
	domain    string // d=
	selector  string
	signer    crypto.Signer
	algorithm string // the a= value
	// hash is the option for crypto.Signer.Sign. RSA signs the SHA-256
	// digest as PKCS#1 v1.5; Ed25519 signs the same digest as a plain
	// message (RFC 8463 §3), which crypto/ed25519 wants as hash 0.
	hash crypto.Hash
}

// NewSigner checks c and returns a Signer for it.
func NewSigner(c SignerConfig) (*Signer, error) {
	if !isDNSName(c.Domain) {
		return nil, fmt.Errorf("dkim: domain %q is not a DNS name", c.Domain)
	}
	if len(c.Keys) == 0 {
		return nil, errors.New("dkim: no signing keys")
	}
	if c.Expire < 0 || (c.Expire > 0 && c.Expire < time.Second) {
		return nil, fmt.Errorf("dkim: expiry %v is not 0 or at least 1s", c.Expire)
	}
	s := &Signer{domain: c.Domain, expire: c.Expire, now: c.Now, others: map[string][]signingKey{}}
	if s.now == nil {
		s.now = time.Now
	}
	for _, k := range c.Keys {
		domain := k.Domain
		if domain == "" {
			domain = c.Domain
		}
		if !isDNSName(domain) {
			return nil, fmt.Errorf("dkim: selector %q: domain %q is not a DNS name", k.Selector, domain)
		}
		if !isDNSName(k.Selector) {
			return nil, fmt.Errorf("dkim: selector %q is not a DNS label", k.Selector)
		}
		if k.Signer == nil {
			return nil, fmt.Errorf("dkim: selector %q has no key", k.Selector)
		}
		kind, err := keyKind(k.Signer.Public())
		if err != nil {
			return nil, fmt.Errorf("dkim: selector %q: %w", k.Selector, err)
		}
		sk := signingKey{domain: domain, selector: k.Selector, signer: k.Signer, algorithm: kind + "-sha256"}
		if kind == "rsa" {
			sk.hash = crypto.SHA256
		}
		if name := lookupName(domain); name == lookupName(c.Domain) {
			sk.domain = c.Domain
			s.keys = append(s.keys, sk)
		} else {
			sk.domain = name // as it is looked up, in the d= tag too
			s.others[name] = append(s.others[name], sk)
		}
	}
	if len(s.keys) == 0 {
		// DSNs, reports and forwarded mail are signed with these alone.
		return nil, fmt.Errorf("dkim: no signing key of %s", c.Domain)
	}
	headers := c.Headers
	if headers == nil {
		headers = DefaultHeaders
	}
	from := false
	for _, h := range headers {
		if !isFieldName(h) {
			return nil, fmt.Errorf("dkim: %q is not a header field name", h)
		}
		h = strings.ToLower(h)
		from = from || h == "from"
		s.headers = append(s.headers, h)
	}
	if !from {
		// RFC 6376 §5.4: the From field MUST be signed.
		return nil, errors.New("dkim: the header list must include From")
	}
	return s, nil
}

// Domain is the d= domain: mail we write ourselves (DSNs, notices) is
// From an address there, so that the signature aligns for DMARC.
func (s *Signer) Domain() string { return s.domain }

// Sign returns the DKIM-Signature header fields of the gateway's domain
// to prepend to msg, one per key in key order, each ending in CRLF and
// folded into lines shorter than 78 characters. msg is a whole message
// (header, empty line, body) with CRLF line endings; it is read, never
// changed.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	fields, body := splitMessage(msg)
	return s.sign(fields, NewBody(body), nil)
}

// SignAs is Sign for mail From an address at fromDomain, such as mail a
// user submits as info@their-domain: the signatures of fromDomain's own
// keys come first, then the gateway's. fromDomain's signature is the one
// that aligns with the From domain for DMARC at the destination; the
// gateway's says the mail passed through us. A domain with no keys of its
// own, or the gateway's own domain, gets the gateway's signatures alone.
//
// The keys are found by fromDomain exactly, never by a parent domain: a
// parent's d= aligns only under DMARC's relaxed mode (adkim=r), fails a
// strict one (adkim=s), and telling which parent is the organizational
// domain needs the public suffix list or DNS (RFC 9989) at signing time.
// A subdomain that sends gets a [[dkim.key]] of its own, which may use
// the same key file.
func (s *Signer) SignAs(msg []byte, fromDomain string) ([]byte, error) {
	fields, body := splitMessage(msg)
	return s.sign(fields, NewBody(body), []string{fromDomain})
}

// SignParts is Sign for a message held in two pieces: its header, parsed
// (message.ParseHeader, or a view of one), and its body. A forwarder that
// adds fields to a message keeps the body where it was read instead of
// copying it behind the new header, and signs the fields it parsed once
// rather than parsing them again, and the body hash it already computed
// verifying the message, if it did. The keys of each of domains sign too,
// before the gateway's, as in SignAs.
func (s *Signer) SignParts(header *message.Header, body *Body, domains ...string) ([]byte, error) {
	return s.sign(fieldsOf(header), body, domains)
}

// HasKeys reports whether domain has keys of its own, besides the
// gateway's.
func (s *Signer) HasKeys(domain string) bool {
	return len(s.others[lookupName(domain)]) > 0
}

// lookupName is domain as s.others holds it: A-labels, lower case, no
// final dot, so that a From or recipient domain in UTF-8 (RFC 6531)
// finds the key configured in either form; "" for a name that is none.
func lookupName(domain string) string {
	name, err := address.Domain(strings.TrimSuffix(domain, "."))
	if err != nil {
		return ""
	}
	return name
}

// keysFor is the keys that sign for domains: each domain's own, once per
// domain, then the gateway's.
func (s *Signer) keysFor(domains []string) []signingKey {
	if len(domains) == 0 {
		return s.keys
	}
	var keys []signingKey
	seen := map[string]bool{}
	for _, d := range domains {
		d = lookupName(d)
		if !seen[d] {
			seen[d] = true
			keys = append(keys, s.others[d]...)
		}
	}
	return append(keys, s.keys...)
}

func (s *Signer) sign(fields []headerField, body *Body, domains []string) ([]byte, error) {
	bh := bodyHash(body)
	signed := appendSignedHeaders(nil, fields, s.headers)
	now := s.now()
	var out []byte
	for _, k := range s.keysFor(domains) {
		var err error
		out, err = appendSignature(out, s.tags(k, now, bh), signed, k)
		if err != nil {
			return nil, fmt.Errorf("dkim: signing with selector %q of %s: %w", k.selector, k.domain, err)
		}
	}
	return out, nil
}

func (s *Signer) tags(k signingKey, now time.Time, bh string) []tag {
	tags := []tag{
		{"v", "1"},
		{"a", k.algorithm},
		{"c", "relaxed/relaxed"},
		{"d", k.domain},
		{"s", k.selector},
		{"t", strconv.FormatInt(now.Unix(), 10)},
	}
	if s.expire > 0 {
		tags = append(tags, tag{"x", strconv.FormatInt(now.Add(s.expire).Unix(), 10)})
	}
	return append(tags,
		tag{"h", strings.Join(s.headers, ":")},
		tag{"bh", bh},
	)
}

// appendSignature appends a complete DKIM-Signature field with the given
// tags and b= last, signed over signedHeaders (the canonical header fields
// named in h=) followed by the field itself with an empty b= (RFC 6376
// §3.7).
func appendSignature(dst []byte, tags []tag, signedHeaders []byte, k signingKey) ([]byte, error) {
	tags = append(tags[:len(tags):len(tags)], tag{"b", ""})
	field, err := signField("DKIM-Signature", tags, signedHeaders, k.signer, k.hash, maxLine)
	if err != nil {
		return nil, err
	}
	return append(dst, field...), nil
}

// isDNSName reports whether s is a plausible ASCII domain name or selector:
// dot-separated labels of letters, digits, '-' and '_'.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// isFieldName reports whether s is a header field name (RFC 5322 §3.6.8).
func isFieldName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}
