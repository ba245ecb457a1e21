package arc

import (
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// SealConfig says who seals and how.
type SealConfig struct {
	Domain   string // d=: the sealing domain, whose DNS publishes the key
	Selector string // s=: the key is at <Selector>._domainkey.<Domain>
	// Key is an RSA key (rsa-sha256; as dkim.LoadKey makes it) or an ed25519.PrivateKey
	// (ed25519-sha256, RFC 8463).
	Key crypto.Signer
	// Headers are the header fields the ARC-Message-Signature signs, exactly
	// as given. nil means the dkim package's DefaultHeaders (oversigned
	// like a DKIM signature, so that a From or Subject added after Sluice
	// shows as a change), plus each DKIM-Signature present, which RFC 8617
	// §4.1.2 asks for. ARC fields and Authentication-Results may not be
	// listed (§4.1.2).
	Headers []string
	Now     func() time.Time // for t=; nil means time.Now
}

// maxLine is the longest line Seal writes, CRLF not counted; RFC 5322
// §2.1.1 asks for no more than 78.
const maxLine = 76

// Seal returns the ARC set that msg gets from Sluice: ARC-Seal,
// ARC-Message-Signature and ARC-Authentication-Results, in that order, each
// "Name: value\r\n" and folded under 78 columns, to prepend to msg. msg is
// the message as it will be sent on, with CRLF line ends; chain is what
// Verify returned for it; the AAR reads
// "ARC-Authentication-Results: i=N; <authServID>; <results>" (results in
// RFC 8601 form, "none" if empty).
//
// The new set's cv= is chain.CV. On a failed chain, the seal signs only the
// new set (RFC 8617 §5.1.2). When no set may follow, Seal returns nil and
// no error, nothing to add: if the newest ARC-Seal already says cv=fail,
// the chain is over (§5.1 step 2); if the message has an instance of 50 or
// more, a 51st is beyond the limit (§4.2.1). Either is the message's state,
// which no retry changes, so it is no error: the message goes on without
// a set of ours, its chain as broken (or as full) as it came.
func Seal(msg []byte, authServID, results string, chain Result, c SealConfig) ([]byte, error) {
	fields, body := dkim.SplitMessage(msg)
	return seal(fields, dkim.NewBody(body), authServID, results, chain, c, maxLine)
}

// SealParts is Seal for a message held in two pieces: its header, parsed
// (message.ParseHeader, or a view of one), and its body, so that a
// forwarder need not copy the body behind the header it made, nor parse
// again the fields it parsed once, nor hash the body again.
func SealParts(header *message.Header, body *dkim.Body, authServID, results string, chain Result, c SealConfig) ([]byte, error) {
	return seal(dkim.FieldsOf(header), body, authServID, results, chain, c, maxLine)
}

// seal is Seal with the line width as a parameter: 0 writes each field on
// one line, the layout the ARC test suite's expected signatures were made
// with (its README, "Signing Header Format Standardization").
func seal(fields []dkim.HeaderField, body *dkim.Body, authServID, results string, verified Result, c SealConfig, width int) ([]byte, error) {
	algorithm, hash, err := c.algorithm()
	if err != nil {
		return nil, err
	}
	if err := checkAuthResults(authServID, results); err != nil {
		return nil, err
	}
	if strings.TrimSpace(results) == "" {
		results = "none"
	}
	names, err := c.signedNames(fields)
	if err != nil {
		return nil, err
	}
	instance, cv, earlier, err := nextSet(parseChain(fields), verified)
	if err != nil || instance == 0 {
		return nil, err
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	i := strconv.Itoa(instance)
	t := strconv.FormatInt(now().Unix(), 10)

	aar := dkim.FoldField(aarName, "i="+i+"; "+authServID+"; "+results, width)

	ams, err := signField(amsName, []dkim.Tag{
		{Name: "a", Value: algorithm},
		{Name: "b", Value: ""},
		{Name: "bh", Value: base64.StdEncoding.EncodeToString(body.Hash("relaxed"))},
		{Name: "c", Value: "relaxed/relaxed"},
		{Name: "d", Value: c.Domain},
		{Name: "h", Value: strings.Join(names, ":")},
		{Name: "i", Value: i},
		{Name: "s", Value: c.Selector},
		{Name: "t", Value: t},
	}, dkim.AppendSignedHeaders(nil, fields, names), c.Key, hash, width)
	if err != nil {
		return nil, err
	}
	as, err := signField(asName, []dkim.Tag{
		{Name: "a", Value: algorithm},
		{Name: "b", Value: ""},
		{Name: "cv", Value: cv},
		{Name: "d", Value: c.Domain},
		{Name: "i", Value: i},
		{Name: "s", Value: c.Selector},
		{Name: "t", Value: t},
	}, sealedHeaders(earlier, aar, ams), c.Key, hash, width)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(as)+len(ams)+len(aar))
	out = append(out, as...)
	out = append(out, ams...)
	return append(out, aar...), nil
}

// nextSet decides the instance and cv= of the set to add, and which earlier
// sets its seal signs. Instance 0 means none is to be added.
func nextSet(c chain, verified Result) (instance int, cv string, earlier []arcSet, err error) {
	switch verified.CV {
	case CVNone:
		if c.max != 0 || c.err != nil {
			return 0, "", nil, errors.New("arc: the chain result says none, but the message has ARC fields; pass Verify's result for this message")
		}
		return 1, CVNone, nil, nil
	case CVPass:
		if c.err != nil || c.max != verified.Instances {
			return 0, "", nil, errors.New("arc: the chain result says pass, but the message's chain is not the one verified; pass Verify's result for this message")
		}
	case CVFail:
		if c.sealedFail {
			return 0, "", nil, nil
		}
	default:
		return 0, "", nil, fmt.Errorf("arc: chain result %q is not none, pass or fail", verified.CV)
	}
	if c.max >= maxInstances {
		return 0, "", nil, nil
	}
	if verified.CV == CVFail {
		return c.max + 1, CVFail, nil, nil
	}
	return c.max + 1, CVPass, c.sets, nil
}

// algorithm checks c and returns the a= value for its key and the hash
// option its Sign wants: RSA signs the SHA-256 digest as PKCS#1 v1.5;
// Ed25519 signs the digest as a plain message (RFC 8463 §3), which
// crypto/ed25519 wants as hash 0.
func (c SealConfig) algorithm() (string, crypto.Hash, error) {
	if !dkim.IsDNSName(c.Domain) {
		return "", 0, fmt.Errorf("arc: domain %q is not a DNS name", c.Domain)
	}
	if !dkim.IsDNSName(c.Selector) {
		return "", 0, fmt.Errorf("arc: selector %q is not a DNS label", c.Selector)
	}
	if c.Key == nil {
		return "", 0, errors.New("arc: no sealing key")
	}
	kind, err := dkim.KeyKind(c.Key.Public())
	if err != nil {
		return "", 0, fmt.Errorf("arc: %w", err)
	}
	if kind == "rsa" {
		return "rsa-sha256", crypto.SHA256, nil
	}
	return kind + "-sha256", 0, nil
}

// signedNames returns the h= list of the ARC-Message-Signature for a
// message with these fields, lower case.
func (c SealConfig) signedNames(fields []dkim.HeaderField) ([]string, error) {
	if c.Headers == nil {
		names := make([]string, 0, len(dkim.DefaultHeaders)+2)
		for _, h := range dkim.DefaultHeaders {
			names = append(names, strings.ToLower(h))
		}
		// Each DKIM-Signature once, not oversigned: hops after Sluice may
		// add their own. Named as the signature picks fields, in ASCII
		// case only: a name that only Unicode folds to DKIM-Signature
		// ("DKIM-ſignature") picks nothing, and counting it would sign the
		// absence of a next hop's signature.
		for _, f := range fields {
			if dkim.EqualName(f.Name(), "dkim-signature") {
				names = append(names, "dkim-signature")
			}
		}
		return names, nil
	}
	names := make([]string, 0, len(c.Headers))
	for _, h := range c.Headers {
		if !dkim.IsFieldName(h) {
			return nil, fmt.Errorf("arc: %q is not a header field name", h)
		}
		h = strings.ToLower(h)
		if h == "authentication-results" || arcFieldName(h) != "" {
			return nil, fmt.Errorf("arc: %s may not be signed by an ARC-Message-Signature (RFC 8617 §4.1.2)", h)
		}
		names = append(names, h)
	}
	return names, nil
}

// checkAuthResults rejects what would break the AAR field: Seal folds the
// text itself, so line breaks may not come in, and the authserv-id is one
// word.
func checkAuthResults(authServID, results string) error {
	if authServID == "" || strings.ContainsAny(authServID, " \t\r\n;") {
		return fmt.Errorf("arc: authserv-id %q is empty or not one word", authServID)
	}
	if strings.ContainsAny(results, "\r\n") {
		return errors.New("arc: the results contain a line break")
	}
	return nil
}

// signField returns a complete ARC-Message-Signature or ARC-Seal with these
// tags, in this order (the ARC test suite's signatures list them
// alphabetically), signed over signedHeaders followed by the field itself
// with an empty b= (RFC 6376 §3.7, RFC 8617 §5.1.1).
func signField(name string, tags []dkim.Tag, signedHeaders []byte, key crypto.Signer, hash crypto.Hash, width int) ([]byte, error) {
	field, err := dkim.SignField(name, tags, signedHeaders, key, hash, width)
	if err != nil {
		return nil, fmt.Errorf("arc: signing %s: %w", name, err)
	}
	return field, nil
}
