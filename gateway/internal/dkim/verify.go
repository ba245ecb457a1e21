package dkim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// Verification is written against RFC 6376 §6 rather than on go-msgauth's
// dkim.Verify, because that verifier cannot do what Sluice needs:
//
//   - it reads the time for x= from a package variable, so tests cannot fix
//     the clock, and a gateway cannot verify with the clock it was given;
//   - it keeps the key record's flags to itself, so a key in testing mode
//     (t=y) cannot be reported as such, and it does not check t=s;
//   - its result has no selector or algorithm, which Authentication-Results
//     and the plugins want;
//   - its lookups take no context, so they cannot end with the session.
//
// Header field selection and both canonicalizations are in canon.go, shared
// with the signer and with package arc.

// TXTLookup returns the TXT records at name, each record's strings joined
// into one. Errors are *net.DNSError: IsNotFound when the name does not
// exist, IsTemporary or IsTimeout when the answer may come later.
type TXTLookup func(ctx context.Context, name string) ([]string, error)

// Result is the verification of one DKIM-Signature field.
type Result struct {
	Result     string // RFC 8601: pass, fail, neutral, policy, temperror, permerror
	Domain     string // d=
	Selector   string // s=
	Algorithm  string // a=
	Identifier string // i= (AUID), as given or defaulted to "@d"
	Reason     string // why, when not pass (short, for logs and A-R comments)
}

// VerifyOptions configures Verify.
type VerifyOptions struct {
	Lookup        TXTLookup        // nil = net.DefaultResolver.LookupTXT
	Now           func() time.Time // nil = time.Now; decides whether x= has passed
	MaxSignatures int              // signatures verified per message; 0 = 10, the rest get permerror
	Keys          *KeyCache        // parsed keys kept across messages; nil = parse each time
}

// The RFC 8601 result words.
const (
	resultPass      = "pass"
	resultFail      = "fail"
	resultNeutral   = "neutral"
	resultPolicy    = "policy"
	resultTemperror = "temperror"
	resultPermerror = "permerror"
)

const (
	defaultMaxSignatures = 10
	// maxHeaderFields bounds the memory spent on one message's header.
	// Real messages have a few dozen fields; a header made of thousands of
	// tiny fields only makes work.
	maxHeaderFields = 1000
)

// Verify checks every DKIM-Signature field of msg (RFC 6376 §6) and returns
// one Result per field, in message order; nil when there is none. The
// signatures are checked at the same time, each with its own key lookup.
// Verify never fails as a whole: whatever goes wrong is in a Result.
func Verify(ctx context.Context, msg []byte, o VerifyOptions) []Result {
	fields, body, tooManyFields := readHeader(msg)
	return verify(ctx, fields, NewBody(body), tooManyFields, o)
}

// VerifyHeader is Verify for a message whose header the gateway parsed
// once (message.ParseHeader), and its body: the fields are read where
// they are, not parsed again, and the body's hashes are the ones the
// message's other signatures, checked or made, share.
func VerifyHeader(ctx context.Context, header *message.Header, body *Body, o VerifyOptions) []Result {
	fields := fieldsOf(header)
	tooMany := len(fields) > maxHeaderFields
	if tooMany {
		fields = appendSignatureFields(nil, fields)
	}
	return verify(ctx, fields, body, tooMany, o)
}

// verify is Verify of a message's fields and body. With tooManyFields,
// fields are its DKIM-Signature fields only, and none is verified.
func verify(ctx context.Context, fields []headerField, body *Body, tooManyFields bool, o VerifyOptions) []Result {
	lookup := o.Lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupTXT
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	limit := o.MaxSignatures
	if limit <= 0 {
		limit = defaultMaxSignatures
	}

	var sigs []int // indexes in fields
	for i, f := range fields {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			sigs = append(sigs, i)
		}
	}
	if len(sigs) == 0 {
		return nil
	}

	m := &verifying{fields: fields, body: body, keys: o.Keys}
	at := now()
	results := make([]Result, len(sigs))
	var wg sync.WaitGroup
	for n, i := range sigs {
		switch {
		case tooManyFields:
			results[n] = unverified(fields[i], fmt.Sprintf("message has more than %d header fields", maxHeaderFields))
		case n >= limit:
			results[n] = unverified(fields[i], "too many signatures")
		default:
			wg.Go(func() { results[n] = m.verify(ctx, i, lookup, at) })
		}
	}
	wg.Wait()
	return results
}

// readHeader splits msg into its header fields and body. A header of more
// than maxHeaderFields fields cannot be verified: then only its
// DKIM-Signature fields are returned, to be reported, and tooMany is set.
// Such a header is read in parts, so that the memory spent on it stays
// bounded however many fields it has.
func readHeader(msg []byte) (fields []headerField, body []byte, tooMany bool) {
	cut := fieldsEnd(msg, maxHeaderFields)
	if cut < 0 {
		fields, body = splitMessage(msg)
		return fields, body, false
	}
	for ; cut >= 0; cut = fieldsEnd(msg, maxHeaderFields) {
		part, _ := splitMessage(msg[:cut])
		fields = appendSignatureFields(fields, part)
		msg = msg[cut:]
	}
	last, _ := splitMessage(msg)
	return appendSignatureFields(fields, last), nil, true
}

func appendSignatureFields(dst, fields []headerField) []headerField {
	for _, f := range fields {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			dst = append(dst, f)
		}
	}
	return dst
}

// fieldsEnd returns the offset in msg where header field number max+1
// starts, or -1 when the header has no more than max fields.
func fieldsEnd(msg []byte, max int) int {
	n := 0
	for off := 0; off < len(msg); {
		end := bytes.IndexByte(msg[off:], '\n') + 1
		if end == 0 {
			end = len(msg) - off
		}
		line := msg[off : off+end]
		if isEmptyLine(line) {
			return -1
		}
		if line[0] != ' ' && line[0] != '\t' {
			if n++; n > max {
				return off
			}
		}
		off += end
	}
	return -1
}

// unverified is the permerror for a signature Verify will not check.
func unverified(field headerField, reason string) Result {
	s, _ := parseSignature(field.raw)
	r := s.result()
	r.Result, r.Reason = resultPermerror, reason
	return r
}

// verifying is one message being verified, shared by its signatures.
type verifying struct {
	fields []headerField
	body   *Body // hashed once per canonicalization for all signatures
	keys   *KeyCache
}

// verify checks the signature in field number i.
func (m *verifying) verify(ctx context.Context, i int, lookup TXTLookup, now time.Time) Result {
	field := m.fields[i]
	s, err := parseSignature(field.raw)
	r := s.result()
	if err == nil {
		err = s.checkTime(now)
	}
	var key *publicKey
	if err == nil {
		key, err = fetchKey(ctx, lookup, s, m.keys)
	}
	if err == nil {
		err = m.check(s, key, i)
	}
	r.Result = resultPass
	if err != nil {
		f := &failure{resultPermerror, err.Error()}
		errors.As(err, &f)
		r.Result, r.Reason = f.result, f.reason
	}
	if key != nil && key.testing && (r.Result == resultPass || r.Result == resultFail) {
		// RFC 6376 §3.6.1: mail signed in testing mode MUST be treated
		// like unsigned mail, whether the signature verifies or not, so
		// it must not count as a pass for DMARC or the plugins.
		what := "signature verified"
		if r.Result == resultFail {
			what = r.Reason
		}
		r.Result, r.Reason = resultNeutral, "key is in testing mode t=y; "+what
	}
	return r
}

// failure is why a signature does not pass, with the RFC 8601 result it
// gives.
type failure struct{ result, reason string }

func (f *failure) Error() string { return f.result + ": " + f.reason }

func permerror(format string, args ...any) error {
	return &failure{resultPermerror, fmt.Sprintf(format, args...)}
}

// signature is a parsed DKIM-Signature field (RFC 6376 §3.5).
type signature struct {
	domain, selector, algorithm, identifier string
	keyType                                 string   // "rsa" or "ed25519", from a=
	headerCanon, bodyCanon                  string   // "simple" or "relaxed"
	headers                                 []string // h=, lower case
	bodyHash, sig                           []byte   // bh=, b=
	expires                                 int64    // x=, Unix seconds; 0 = none
}

// result is a Result naming the signature, as far as it was parsed.
func (s *signature) result() Result {
	return Result{Domain: s.domain, Selector: s.selector, Algorithm: s.algorithm, Identifier: s.identifier}
}

// parseSignature parses and checks the tags of a DKIM-Signature field. The
// signature it returns is never nil: it holds what could be read, for the
// Result.
func parseSignature(raw []byte) (*signature, error) {
	s := &signature{}
	_, value, _ := bytes.Cut(raw, []byte(":"))
	tags, err := parseTags(string(value))
	if err != nil {
		return s, permerror("malformed signature: %v", err)
	}
	s.domain, s.selector, s.algorithm = tags["d"], tags["s"], tags["a"]
	s.identifier = tags["i"]
	if _, ok := tags["i"]; !ok && s.domain != "" {
		s.identifier = "@" + s.domain
	}

	if v, ok := tags["v"]; !ok || v != "1" {
		return s, permerror("signature version v= is not 1")
	}
	for _, name := range []string{"a", "b", "bh", "d", "h", "s"} {
		if _, ok := tags[name]; !ok {
			return s, permerror("signature has no %s= tag", name)
		}
	}
	if s.keyType, err = keyTypeOf(s.algorithm); err != nil {
		return s, err
	}
	if s.headerCanon, s.bodyCanon, err = parseCanon(tags["c"]); err != nil {
		return s, err
	}
	if !isDNSName(s.domain) {
		return s, permerror("d= is not a domain name")
	}
	if !isDNSName(s.selector) {
		return s, permerror("s= is not a selector")
	}
	if !inDomain(s.identifier, s.domain, false) {
		return s, permerror("i= is not in the d= domain")
	}
	if s.headers, err = parseHeaderList(tags["h"]); err != nil {
		return s, err
	}
	if q, ok := tags["q"]; ok && !hasItem(q, "dns/txt") {
		return s, permerror("no supported key query method in q=")
	}
	if err := s.parseTimes(tags["t"], tags["x"]); err != nil {
		return s, err
	}
	if s.bodyHash, err = decodeBase64(tags["bh"]); err != nil {
		return s, permerror("bh= is not base64")
	}
	if s.sig, err = decodeBase64(tags["b"]); err != nil || len(s.sig) == 0 {
		return s, permerror("b= is not a base64 signature")
	}
	if _, ok := tags["l"]; ok {
		// A body length limit leaves whatever is appended past it unsigned;
		// anyone can add content under the signer's name.
		return s, &failure{resultPolicy, "body length limit l= not accepted"}
	}
	return s, nil
}

// keyTypeOf returns the key type an a= value needs.
func keyTypeOf(algorithm string) (string, error) {
	switch strings.ToLower(algorithm) {
	case "rsa-sha256":
		return "rsa", nil
	case "ed25519-sha256":
		return "ed25519", nil
	case "rsa-sha1":
		// RFC 8301 §3.1: verifiers must not consider SHA-1 signatures valid.
		return "", permerror("rsa-sha1 is no longer accepted, RFC 8301")
	default:
		return "", permerror("unknown algorithm a=")
	}
}

// parseCanon reads c=: header/body, each "simple" or "relaxed"; a missing
// part is "simple".
func parseCanon(c string) (header, body string, err error) {
	header, body, _ = strings.Cut(strings.ToLower(c), "/")
	if header == "" {
		header = "simple"
	}
	if body == "" {
		body = "simple"
	}
	for _, v := range []string{header, body} {
		if v != "simple" && v != "relaxed" {
			return "", "", permerror("unknown canonicalization c=")
		}
	}
	return header, body, nil
}

// parseHeaderList reads h=: field names separated by colons, which must
// include From (RFC 6376 §6.1.1).
func parseHeaderList(h string) ([]string, error) {
	var names []string
	from := false
	for name := range strings.SplitSeq(h, ":") {
		name = strings.ToLower(trimFWS(name))
		if !isFieldName(name) {
			return nil, permerror("h= holds something other than field names")
		}
		from = from || name == "from"
		names = append(names, name)
	}
	if !from {
		return nil, permerror("From is not signed")
	}
	return names, nil
}

// parseTimes reads t= and x= (Unix seconds, at most 12 digits); x must be
// after t when both are given.
func (s *signature) parseTimes(t, x string) error {
	var signed int64
	if t != "" {
		var ok bool
		if signed, ok = parseSeconds(t); !ok {
			return permerror("t= is not a time")
		}
	}
	if x != "" {
		var ok bool
		if s.expires, ok = parseSeconds(x); !ok {
			return permerror("x= is not a time")
		}
		if t != "" && s.expires <= signed {
			return permerror("x= is not after t=")
		}
	}
	return nil
}

func parseSeconds(v string) (int64, bool) {
	if len(v) == 0 || len(v) > 12 {
		return 0, false
	}
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// checkTime rejects a signature whose x= has passed (RFC 6376 §3.5).
func (s *signature) checkTime(now time.Time) error {
	if s.expires != 0 && now.Unix() > s.expires {
		return permerror("signature expired")
	}
	return nil
}

// publicKey is a parsed key record (RFC 6376 §3.6.1).
type publicKey struct {
	keyType string // "rsa" or "ed25519"
	rsa     *RSAKey
	ed25519 ed25519.PublicKey
	testing bool // t=y
	strict  bool // t=s: i= must be in d= itself, not a subdomain
}

// fetchKey looks up and parses the key record for s. Only a name or record
// that does not exist is a permanent failure: anything else may work later
// (RFC 6376 §6.1.2).
func fetchKey(ctx context.Context, lookup TXTLookup, s *signature, keys *KeyCache) (*publicKey, error) {
	name := s.selector + "._domainkey." + s.domain
	records, err := lookup(ctx, name)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, permerror("no key for signature")
		}
		// The DNS error's own text, without the name and the resolver's
		// address: the reason goes into header fields others read.
		reason := err.Error()
		if dnsErr != nil {
			reason = dnsErr.Err
		}
		return nil, &failure{resultTemperror, "key lookup: " + reason}
	}
	switch len(records) {
	case 0:
		return nil, permerror("no key for signature")
	case 1:
		return readKeyRecord(records[0], keys)
	default:
		// RFC 6376 §3.6.2.2 leaves several records undefined; picking
		// one would make the result depend on the order of the answer.
		return nil, permerror("more than one key record at %s", name)
	}
}

// parseKeyRecord parses a key record.
func parseKeyRecord(record string) (*publicKey, error) { return readKeyRecord(record, nil) }

// readKeyRecord parses a key record, taking its RSA key from keys if it
// was parsed before.
func readKeyRecord(record string, keys *KeyCache) (*publicKey, error) {
	tags, err := parseTags(record)
	if err != nil {
		return nil, permerror("malformed key record: %v", err)
	}
	if v, ok := tags["v"]; ok && (v != "DKIM1" || !strings.HasPrefix(trimFWS(record), "v")) {
		return nil, permerror("key record version is not DKIM1")
	}
	if h, ok := tags["h"]; ok && !hasItem(h, "sha256") {
		return nil, permerror("key does not allow sha256, h=")
	}
	if s, ok := tags["s"]; ok && !hasItem(s, "*") && !hasItem(s, "email") {
		return nil, permerror("key is not for email, s=")
	}
	k := &publicKey{
		keyType: strings.ToLower(tags["k"]),
		testing: hasItem(tags["t"], "y"),
		strict:  hasItem(tags["t"], "s"),
	}
	if k.keyType == "" {
		k.keyType = "rsa"
	}
	p, ok := tags["p"]
	if !ok {
		return nil, permerror("key record has no p=")
	}
	if p == "" {
		return nil, permerror("key revoked")
	}
	der, err := decodeBase64(p)
	if err != nil {
		return nil, permerror("key p= is not base64")
	}
	switch k.keyType {
	case "rsa":
		k.rsa, err = keys.RSA(der, parseRSAKey)
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			err = permerror("Ed25519 key is not %d bytes", ed25519.PublicKeySize)
		}
		k.ed25519 = der
	default:
		err = permerror("unknown key type k=")
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// parseRSAKey reads p= of an RSA key: a SubjectPublicKeyInfo as RFC 6376
// says, or a bare RSAPublicKey, which some publish (RFC 6376 erratum 3017).
func parseRSAKey(der []byte) (*rsa.PublicKey, error) {
	var key *rsa.PublicKey
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		key, _ = pub.(*rsa.PublicKey)
	} else if pub, err := x509.ParsePKCS1PublicKey(der); err == nil {
		key = pub
	}
	if key == nil {
		return nil, permerror("key p= is not an RSA public key")
	}
	if bits := key.N.BitLen(); bits < minRSABits {
		// RFC 8301 §3.2: such signatures MUST NOT be considered valid.
		return nil, permerror("RSA key has %d bits, fewer than %d, RFC 8301", bits, minRSABits)
	}
	return key, nil
}

// check verifies the signature in field number i with key: the body hash,
// then the signature over the header.
func (m *verifying) check(s *signature, key *publicKey, i int) error {
	if key.keyType != s.keyType {
		return permerror("key type k=%s does not fit a=", key.keyType)
	}
	if key.strict && !inDomain(s.identifier, s.domain, true) {
		return permerror("i= is a subdomain of d= but the key says t=s")
	}
	if subtle.ConstantTimeCompare(m.body.Hash(s.bodyCanon), s.bodyHash) != 1 {
		return &failure{resultFail, "body hash did not verify"}
	}
	digest := m.headerHash(s, i)
	ok := false
	switch key.keyType {
	case "rsa":
		ok = key.rsa.Verify(digest, s.sig)
	case "ed25519":
		// RFC 8463 §3: Ed25519 signs the SHA-256 hash as its message.
		ok = ed25519.Verify(key.ed25519, digest, s.sig)
	}
	if !ok {
		return &failure{resultFail, "signature did not verify"}
	}
	return nil
}

// headerHash hashes what the signer signed (RFC 6376 §3.7): the fields
// named in h= (§5.4.2), then the signature field itself, field number i,
// with an empty b= and no final line break.
func (m *verifying) headerHash(s *signature, i int) []byte {
	h := sha256.New()
	var buf []byte
	for _, f := range selectFields(m.fields, s.headers, i) {
		buf = appendCanonHeader(buf[:0], f.raw, s.headerCanon)
		h.Write(buf)
	}
	buf = appendCanonHeader(buf[:0], withoutSignature(m.fields[i].raw), s.headerCanon)
	h.Write(bytes.TrimSuffix(buf, []byte("\r\n")))
	return h.Sum(nil)
}

// withoutSignature returns a DKIM-Signature field with the value of its b=
// tag, and the whitespace around it, removed, and without its final line
// break: the form it had when it was signed.
func withoutSignature(raw []byte) []byte {
	raw = bytes.TrimSuffix(raw, []byte("\n"))
	raw = bytes.TrimSuffix(raw, []byte("\r"))
	colon := bytes.IndexByte(raw, ':')
	for start := colon + 1; colon >= 0 && start <= len(raw); {
		end := bytes.IndexByte(raw[start:], ';')
		if end < 0 {
			end = len(raw)
		} else {
			end += start
		}
		name, _, ok := bytes.Cut(raw[start:end], []byte("="))
		if ok && trimFWS(string(name)) == "b" {
			valueStart := start + len(name) + 1
			out := append([]byte(nil), raw[:valueStart]...)
			return append(out, raw[end:]...)
		}
		start = end + 1
	}
	return raw
}

// parseTags splits a tag-list (RFC 6376 §3.2) into values by tag name, with
// the whitespace around names and values removed. A name given twice makes
// the whole list invalid. Empty entries (";;") are skipped.
func parseTags(list string) (map[string]string, error) {
	tags := map[string]string{}
	for spec := range strings.SplitSeq(list, ";") {
		if trimFWS(spec) == "" {
			continue
		}
		name, value, ok := strings.Cut(spec, "=")
		name = trimFWS(name)
		if !ok || !isTagName(name) {
			return nil, errors.New("not a list of tag=value")
		}
		if _, dup := tags[name]; dup {
			return nil, fmt.Errorf("tag %s= given twice", name)
		}
		tags[name] = trimFWS(value)
	}
	return tags, nil
}

// isTagName reports whether s is a tag-name: ALPHA *(ALPHA / DIGIT / "_").
func isTagName(s string) bool {
	for i, c := range []byte(s) {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '_')) {
			return false
		}
	}
	return s != ""
}

func trimFWS(s string) string { return strings.Trim(s, " \t\r\n") }

// hasItem reports whether the colon-separated list holds item, ignoring
// case and whitespace.
func hasItem(list, item string) bool {
	for v := range strings.SplitSeq(list, ":") {
		if strings.EqualFold(trimFWS(v), item) {
			return true
		}
	}
	return false
}

// decodeBase64 decodes base64 that may be folded (RFC 6376 §2.4).
func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(s)
}

// inDomain reports whether the domain of identifier (local@domain) is
// domain, or, unless exact, a subdomain of it.
func inDomain(identifier, domain string, exact bool) bool {
	at := strings.LastIndexByte(identifier, '@')
	if at < 0 {
		return false
	}
	d := strings.ToLower(identifier[at+1:])
	domain = strings.ToLower(domain)
	return d == domain || !exact && strings.HasSuffix(d, "."+domain)
}
