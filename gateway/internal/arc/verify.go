package arc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// maxSignedNames caps h= in an ARC-Message-Signature: real signers list a
// few dozen names, and a longer list only makes work.
const maxSignedNames = 256

// Verify validates the ARC chain of msg as RFC 8617 §5.2 says. It never
// fails in any other way than a Result with CV fail and the reason: every
// error, DNS ones included, is a chain failure (§5.2.1).
func Verify(ctx context.Context, msg []byte, o VerifyOptions) Result {
	fields, body := dkim.SplitMessage(msg)
	return verifyFields(ctx, fields, dkim.NewBody(body), o)
}

// VerifyHeader is Verify for a message whose header the gateway parsed
// once (message.ParseHeader), and its body: the fields are read where
// they are, not parsed again, and the body's hashes are the ones the
// message's DKIM signatures, checked or made, share.
func VerifyHeader(ctx context.Context, header *message.Header, body *dkim.Body, o VerifyOptions) Result {
	return verifyFields(ctx, dkim.FieldsOf(header), body, o)
}

func verifyFields(ctx context.Context, fields []dkim.HeaderField, body *dkim.Body, o VerifyOptions) Result {
	c := parseChain(fields)
	if c.err == nil && c.max == 0 {
		return Result{CV: CVNone}
	}
	r := Result{CV: CVFail, Instances: c.max}
	if c.err != nil {
		r.Reason = c.err.Error()
		return r
	}
	for i, s := range c.sets {
		r.Sealers = append(r.Sealers, Sealer{Instance: i + 1, Domain: s.asTags["d"], Selector: s.asTags["s"]})
	}

	v := verifier{ctx: ctx, keys: keys{lookup: o.Lookup, parsed: o.Keys}, now: o.Now, fields: fields, body: body}
	if v.now == nil {
		v.now = time.Now
	}
	n := c.max
	if err := v.verifyAMS(c.sets[n-1].ams, c.sets[n-1].amsTags); err != nil {
		r.Reason = fmt.Sprintf("%s i=%d: %v", amsName, n, err)
		return r
	}
	for i := n; i >= 1; i-- {
		if err := v.verifyAS(c.sets[:i]); err != nil {
			r.Reason = fmt.Sprintf("%s i=%d: %v", asName, i, err)
			return r
		}
	}
	// Step 5, done after the seals (the order changes no result, and a
	// failed chain needs no oldest-pass): the oldest AMS that still
	// validates shows how far back the message is unchanged.
	oldest := n
	for ; oldest > 1; oldest-- {
		s := c.sets[oldest-2]
		if v.verifyAMS(s.ams, s.amsTags) != nil {
			break
		}
	}
	r.CV, r.OldestPass = CVPass, oldest
	return r
}

// verifier checks the signatures of one message.
type verifier struct {
	ctx    context.Context
	keys   keys
	now    func() time.Time
	fields []dkim.HeaderField
	body   *dkim.Body
	bodies map[string][]byte // hashes of a body cut to l=, by canonicalization and l=
}

// verifyAMS checks one ARC-Message-Signature: a DKIM signature without v=,
// whose i= is the instance (RFC 8617 §4.1.2).
func (v *verifier) verifyAMS(field dkim.HeaderField, t tags) error {
	for _, name := range []string{"a", "b", "bh", "d", "h", "s"} {
		if _, ok := t[name]; !ok {
			return fmt.Errorf("no %s= tag", name)
		}
	}
	kind, err := algorithmKind(t["a"])
	if err != nil {
		return err
	}
	headerCanon, bodyCanon, err := parseCanonicalization(t)
	if err != nil {
		return err
	}
	if err := checkDomain(t); err != nil {
		return err
	}
	if err := v.checkTimes(t); err != nil {
		return err
	}
	names, err := signedNames(t["h"])
	if err != nil {
		return err
	}
	sig, err := decodeBase64(t["b"])
	if err != nil {
		return fmt.Errorf("b= is not base64: %v", err)
	}
	wantBH, err := decodeBase64(t["bh"])
	if err != nil {
		return fmt.Errorf("bh= is not base64: %v", err)
	}
	bh, err := v.bodyHash(bodyCanon, t)
	if err != nil {
		return err
	}
	if !bytes.Equal(bh, wantBH) {
		return errors.New("body hash does not match: the body changed")
	}

	h := sha256.New()
	var buf []byte
	for _, f := range dkim.SelectFields(v.fields, names) {
		buf = dkim.AppendCanonHeader(buf[:0], f.Raw(), headerCanon)
		h.Write(buf)
	}
	buf = dkim.AppendCanonHeader(buf[:0], withoutSignature(field.Raw()), headerCanon)
	h.Write(bytes.TrimSuffix(buf, []byte("\r\n")))
	return v.checkSignature(kind, t, h.Sum(nil), sig)
}

// verifyAS checks the ARC-Seal of the last of sets, which signs every set up
// to its own in order (RFC 8617 §5.1.1), always with relaxed
// canonicalization and without h= (§4.1.3).
func (v *verifier) verifyAS(sets []arcSet) error {
	s := sets[len(sets)-1]
	t := s.asTags
	for _, name := range []string{"a", "b", "d", "s"} {
		if _, ok := t[name]; !ok {
			return fmt.Errorf("no %s= tag", name)
		}
	}
	if _, ok := t["h"]; ok {
		return errors.New("has an h= tag, which ARC-Seal must not have")
	}
	kind, err := algorithmKind(t["a"])
	if err != nil {
		return err
	}
	if err := checkDomain(t); err != nil {
		return err
	}
	if err := v.checkTimes(t); err != nil {
		return err
	}
	sig, err := decodeBase64(t["b"])
	if err != nil {
		return fmt.Errorf("b= is not base64: %v", err)
	}
	h := sha256.New()
	h.Write(sealedHeaders(sets[:len(sets)-1], s.aar.Raw(), s.ams.Raw()))
	h.Write(bytes.TrimSuffix(dkim.AppendRelaxedHeader(nil, withoutSignature(s.as.Raw())), []byte("\r\n")))
	return v.checkSignature(kind, t, h.Sum(nil), sig)
}

// sealedHeaders returns what an ARC-Seal signs before itself: the relaxed
// canonical AAR, AMS and AS of each earlier set, then the AAR and AMS of its
// own set.
func sealedHeaders(earlier []arcSet, aar, ams []byte) []byte {
	n := len(aar) + len(ams) // the relaxed forms are no longer
	for _, s := range earlier {
		n += len(s.aar.Raw()) + len(s.ams.Raw()) + len(s.as.Raw())
	}
	b := make([]byte, 0, n)
	for _, s := range earlier {
		b = dkim.AppendRelaxedHeader(b, s.aar.Raw())
		b = dkim.AppendRelaxedHeader(b, s.ams.Raw())
		b = dkim.AppendRelaxedHeader(b, s.as.Raw())
	}
	b = dkim.AppendRelaxedHeader(b, aar)
	return dkim.AppendRelaxedHeader(b, ams)
}

// checkSignature verifies sig over the SHA-256 digest with the key at
// s=._domainkey.d=.
func (v *verifier) checkSignature(kind string, t tags, digest, sig []byte) error {
	key, err := v.keys.get(v.ctx, t["s"], t["d"])
	if err != nil {
		return err
	}
	if key.kind != kind {
		return fmt.Errorf("a=%s but the key is k=%s", t["a"], key.kind)
	}
	switch pub := key.key.(type) {
	case *dkim.RSAKey:
		if !pub.Verify(digest, sig) {
			return errors.New("signature does not verify")
		}
	case ed25519.PublicKey:
		// RFC 8463 §3: Ed25519 signs the SHA-256 digest as its message.
		if !ed25519.Verify(pub, digest, sig) {
			return errors.New("signature does not verify")
		}
	}
	return nil
}

// algorithmKind returns the key type an a= value needs. Only SHA-256 is
// accepted: RFC 8301 retired rsa-sha1.
func algorithmKind(a string) (string, error) {
	switch a {
	case "rsa-sha256":
		return "rsa", nil
	case "ed25519-sha256":
		return "ed25519", nil
	}
	return "", fmt.Errorf("unsupported algorithm a=%.30q", a)
}

// parseCanonicalization reads c= (RFC 6376 §3.5): header/body, each
// "simple" or "relaxed"; a missing body part means simple. A missing tag
// means relaxed/relaxed, not DKIM's simple/simple: early ARC drafts allowed
// only relaxed, and the ARC test suite and dkimpy, which made its
// signatures, still read an AMS without c= that way.
func parseCanonicalization(t tags) (header, body string, err error) {
	c, ok := t["c"]
	if !ok {
		return "relaxed", "relaxed", nil
	}
	header, body, found := strings.Cut(c, "/")
	if !found {
		body = "simple"
	}
	for _, x := range []string{header, body} {
		if x != "simple" && x != "relaxed" {
			return "", "", fmt.Errorf("unknown canonicalization c=%.30q", c)
		}
	}
	return header, body, nil
}

func checkDomain(t tags) error {
	if !dkim.IsDNSName(t["d"]) {
		return fmt.Errorf("d=%.60q is not a domain name", t["d"])
	}
	if !dkim.IsDNSName(t["s"]) {
		return fmt.Errorf("s=%.60q is not a selector", t["s"])
	}
	return nil
}

// checkTimes checks t= and x= where present: well formed, and x= neither
// before t= nor past.
func (v *verifier) checkTimes(t tags) error {
	var signed int64
	if s, ok := t["t"]; ok {
		var err error
		if signed, err = parseTime("t", s); err != nil {
			return err
		}
	}
	if s, ok := t["x"]; ok {
		expires, err := parseTime("x", s)
		if err != nil {
			return err
		}
		if expires < signed {
			return errors.New("x= is before t=")
		}
		if v.now().Unix() > expires {
			return errors.New("signature expired (x=)")
		}
	}
	return nil
}

// signedNames reads h=: colon-separated field names, lower-cased. An empty
// name signs nothing, as no field has it. An AMS cannot cover an ARC-Seal:
// the seal of its set is made after it (RFC 8617 §4.1.2 keeps ARC fields
// out of h= altogether; the ARC test suite still accepts the other two).
func signedNames(h string) ([]string, error) {
	var names []string
	for _, name := range strings.Split(h, ":") {
		name = strings.ToLower(trimFWS(name))
		if name == "" {
			continue
		}
		if name == "arc-seal" {
			return nil, errors.New("h= includes ARC-Seal")
		}
		names = append(names, name)
	}
	if len(names) > maxSignedNames {
		return nil, fmt.Errorf("h= lists %d fields, more than %d", len(names), maxSignedNames)
	}
	return names, nil
}

// bodyHash returns the SHA-256 of the canonical body, cut to l= octets if
// the tag is there. Sets often share a canonicalization, so the hash is
// computed once per kind; that of the whole body, once per message.
func (v *verifier) bodyHash(canon string, t tags) ([]byte, error) {
	s, ok := t["l"]
	if !ok {
		return v.body.Hash(canon), nil
	}
	limit, err := strconv.ParseInt(s, 10, 64)
	if err != nil || !isDigits(s) {
		return nil, fmt.Errorf("l=%.20q is not a length", s)
	}
	key := canon + "/" + strconv.FormatInt(limit, 10)
	if sum, ok := v.bodies[key]; ok {
		return sum, nil
	}
	h := sha256.New()
	w := &limitedWriter{w: h, left: limit}
	dkim.WriteCanonBody(w, v.body.Bytes(), canon)
	if w.left > 0 {
		return nil, errors.New("l= is longer than the body")
	}
	if v.bodies == nil {
		v.bodies = map[string][]byte{}
	}
	v.bodies[key] = h.Sum(nil)
	return v.bodies[key], nil
}

// limitedWriter passes on the first left bytes written to it (all when left
// is negative) and counts down what is still missing: the l= tag.
type limitedWriter struct {
	w    io.Writer
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	n := len(p)
	if l.left >= 0 {
		p = p[:min(int64(len(p)), l.left)]
		l.left -= int64(len(p))
	}
	l.w.Write(p)
	return n, nil
}
