package arc

import (
	"fmt"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
)

// The three header fields of an ARC set, in the order the ARC-Seal signs them
// (RFC 8617 §5.1.1).
const (
	aarName = "ARC-Authentication-Results"
	amsName = "ARC-Message-Signature"
	asName  = "ARC-Seal"
)

// arcSet is one ARC set as found in the message. Any field may be missing
// from a malformed chain.
type arcSet struct {
	aar, ams, as          dkim.HeaderField
	amsTags, asTags       tags
	hasAAR, hasAMS, hasAS bool
}

// chain is the ARC header fields of a message, grouped by instance.
type chain struct {
	sets []arcSet // sets[i-1] is instance i
	max  int      // the highest instance seen, even in a malformed chain
	err  error    // why the chain is malformed, nil if it is not
	// sealedFail: the ARC-Seal with the highest instance says cv=fail, so
	// the chain is over (RFC 8617 §5.1 step 2, §5.2 step 2).
	sealedFail bool
}

// parseChain collects the ARC sets of a message and checks their structure
// (RFC 8617 §5.2 steps 1 to 3). It does no cryptography, so Seal can use it
// as well as Verify.
func parseChain(fields []dkim.HeaderField) chain {
	var c chain
	type found struct {
		field    dkim.HeaderField
		name     string
		instance int
		tags     tags
	}
	var all []found
	lastSeal := 0
	for _, f := range fields {
		name := arcFieldName(f.Name())
		if name == "" {
			continue
		}
		fd := found{field: f, name: name}
		var err error
		if name == aarName {
			fd.instance, err = aarInstance(fieldValue(f.Raw()))
		} else if fd.tags, err = parseTags(fieldValue(f.Raw())); err == nil {
			fd.instance, err = parseInstance(fd.tags["i"])
		}
		if err != nil {
			c.fail("%s: %v", name, err)
			continue
		}
		c.max = max(c.max, fd.instance)
		if name == asName && fd.instance >= lastSeal {
			lastSeal = fd.instance
			c.sealedFail = fd.tags["cv"] == CVFail
		}
		all = append(all, fd)
	}
	if c.err != nil || c.max == 0 {
		return c
	}
	if c.sealedFail {
		c.fail("ARC-Seal i=%d says cv=fail", lastSeal)
		return c
	}
	if c.max > maxInstances {
		c.fail("%d ARC sets, more than %d", c.max, maxInstances)
		return c
	}

	c.sets = make([]arcSet, c.max)
	for _, fd := range all {
		s := &c.sets[fd.instance-1]
		var dup bool
		switch fd.name {
		case aarName:
			dup, s.aar, s.hasAAR = s.hasAAR, fd.field, true
		case amsName:
			dup, s.ams, s.amsTags, s.hasAMS = s.hasAMS, fd.field, fd.tags, true
		case asName:
			dup, s.as, s.asTags, s.hasAS = s.hasAS, fd.field, fd.tags, true
		}
		if dup {
			c.fail("two %s fields with i=%d", fd.name, fd.instance)
			return c
		}
	}

	// Step 3: every set complete, cv=none on the first and pass after.
	for i, s := range c.sets {
		n := i + 1
		switch {
		case !s.hasAAR:
			c.fail("no %s with i=%d", aarName, n)
		case !s.hasAMS:
			c.fail("no %s with i=%d", amsName, n)
		case !s.hasAS:
			c.fail("no %s with i=%d", asName, n)
		case n == 1 && s.asTags["cv"] != CVNone:
			c.fail("ARC-Seal i=1 has cv=%.10s, want none", s.asTags["cv"])
		case n > 1 && s.asTags["cv"] != CVPass:
			c.fail("ARC-Seal i=%d has cv=%.10s, want pass", n, s.asTags["cv"])
		}
		if c.err != nil {
			return c
		}
	}
	return c
}

func (c *chain) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf(format, args...)
	}
}

// arcFieldName returns the canonical name of an ARC header field, or "" for
// any other field. Field names are case-insensitive.
func arcFieldName(name string) string {
	for _, n := range []string{aarName, amsName, asName} {
		if strings.EqualFold(name, n) {
			return n
		}
	}
	return ""
}

// aarInstance reads the instance tag that starts an
// ARC-Authentication-Results value: [CFWS] "i" [CFWS] "=" [CFWS] position
// [CFWS] ";" (RFC 8617 §4.1.1).
func aarInstance(value string) (int, error) {
	rest, ok := strings.CutPrefix(trimFWS(value), "i")
	if !ok {
		return 0, fmt.Errorf("value does not start with i=")
	}
	rest, ok = strings.CutPrefix(trimFWS(rest), "=")
	if !ok {
		return 0, fmt.Errorf("value does not start with i=")
	}
	position, _, ok := strings.Cut(rest, ";")
	if !ok {
		return 0, fmt.Errorf("no ';' after the instance")
	}
	return parseInstance(trimFWS(position))
}
