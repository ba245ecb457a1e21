package main

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"slices"
	"strings"

	"golang.org/x/net/idna"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// settings is the plugin's config table.
type settings struct {
	// Domain is where rewritten addresses live: one of the gateway's
	// domains, so that replies come back, and the one it signs for, so
	// that its signature aligns with the new From.
	Domain string `toml:"domain"`
	// Secret signs the reply addresses; OldSecrets still check them, so
	// that a secret can be changed without breaking replies.
	Secret     string   `toml:"secret"`
	OldSecrets []string `toml:"old_secrets"`
	// RewriteSigned rewrites even when an aligned DKIM signature passed
	// here, for chains whose plugins change fields the author signed.
	RewriteSigned bool `toml:"rewrite_signed"`
}

// minSecret is the shortest secret accepted: 16 bytes of a random secret
// are 128 bits, out of reach of a search.
const minSecret = 16

// resultsField is how a plugin records a result: the gateway folds the
// entries of a field added under this name into its own
// Authentication-Results, where a dmarc entry replaces the gateway's.
const resultsField = "Authentication-Results"

// rewriter is the validated configuration.
type rewriter struct {
	signer
	ours          map[string]bool // the gateway's domains
	rewriteSigned bool
}

func newRewriter(s settings, domains []string) (*rewriter, error) {
	r := &rewriter{ours: make(map[string]bool), rewriteSigned: s.RewriteSigned}
	for _, d := range domains {
		r.ours[d] = true
	}
	if s.Domain == "" {
		return nil, &sdk.SettingError{Key: "domain", Err: errors.New("domain: missing; the domain of rewritten addresses, one of the gateway's domains")}
	}
	d, err := idna.Lookup.ToASCII(strings.TrimSuffix(s.Domain, "."))
	d = strings.ToLower(d)
	if err != nil || !mailDomain(d) {
		return nil, &sdk.SettingError{Key: "domain", Err: fmt.Errorf("domain %q is not a domain name", s.Domain)}
	}
	if len(domains) > 0 && !r.ours[d] {
		// Replies to an address there would never reach the gateway.
		return nil, &sdk.SettingError{Key: "domain", Err: fmt.Errorf("domain %q is not one of the gateway's domains (%s): replies would not come back", s.Domain, strings.Join(domains, ", "))}
	}
	r.domain = d
	if len(s.Secret) < minSecret {
		return nil, &sdk.SettingError{Key: "secret", Err: fmt.Errorf("secret: %d bytes; at least %d are needed (head -c 24 /dev/urandom | base64)", len(s.Secret), minSecret)}
	}
	r.secrets = append(r.secrets, []byte(s.Secret))
	for _, old := range s.OldSecrets {
		if old == "" || slices.ContainsFunc(r.secrets, func(b []byte) bool { return string(b) == old }) {
			return nil, &sdk.SettingError{Key: "old_secrets", Err: errors.New("old_secrets: empty, or listed twice or as secret")}
		}
		r.secrets = append(r.secrets, []byte(old))
	}
	return r, nil
}

// permissions declares what the plugin does: routes replies (or refuses a
// forged reply address) at rcpt; replaces From and adds Reply-To and its
// result at data, or defers when it cannot read the header.
func (r *rewriter) permissions() abi.Permissions {
	return abi.MayAccept | abi.MaySetDestination | abi.MayReject | abi.MayTempfail | abi.MayAddHeaders | abi.MayRemoveHeaders
}

// route sends a recipient that is one of our reply addresses to the author
// it stands for, refuses one in the form of a reply address that we did
// not mint, and leaves any other recipient to the other plugins.
//
// A reply is accepted, which ends the chain for that recipient: the
// router after us would otherwise give it its domain's catch-all, forward
// or reject, and the last destination set wins.
func (r *rewriter) route(rcpt string) sdk.Verdict {
	at := strings.LastIndex(rcpt, "@")
	if at <= 0 {
		return sdk.Continue()
	}
	domain, err := idna.Lookup.ToASCII(rcpt[at+1:])
	if err != nil || strings.ToLower(domain) != r.domain {
		return sdk.Continue()
	}
	author, minted, ok := r.reply(rcpt[:at])
	switch {
	case !minted:
		return sdk.Continue()
	case !ok:
		return sdk.Reject(550, "5.1.1", fmt.Sprintf("<%s>: no such reply address here", printable(rcpt)))
	}
	return sdk.Accept().WithDestination(author)
}

// decide is the verdict at data: the From rewritten, or the message left
// as it is.
//
// Forwarded, a message reaches its destination from our address, with our
// SRS sender: SPF there passes for our domain, never the author's. So the
// destination's DMARC check of the author's domain passes only by an
// aligned DKIM signature that survives the trip. If there is none and the
// author asks for reject or quarantine, the destination would refuse or
// junk the mail, and hold it against us. Then the From becomes an address
// of ours, which our signature aligns with.
//
// Only mail whose DMARC passed here is rewritten: mail that failed did not
// come from the author's domain as far as anyone can tell, and rewriting
// it would put our name on a forgery; the destination applies the author's
// policy to it, as the author asked.
func (r *rewriter) decide(req *sdk.Request) sdk.Verdict {
	d := &req.Auth.DMARC
	if d.Result != "pass" || (d.Policy != "reject" && d.Policy != "quarantine") ||
		(d.DKIMAligned && !r.rewriteSigned) || r.ours[d.FromDomain] {
		return sdk.Continue()
	}
	from, err := sdk.HeaderValues("From")
	if err != nil {
		return r.deferred(err)
	}
	replyTo, err := sdk.HeaderValues("Reply-To")
	if err != nil {
		return r.deferred(err)
	}
	if len(from) != 1 {
		return r.leave(req, fmt.Sprintf("%d From fields", len(from)))
	}
	if strings.ContainsFunc(from[0], control) {
		// Copied into Reply-To, it would make our verdict one the gateway
		// refuses, and the sender would be told to retry for ever.
		return r.leave(req, fmt.Sprintf("the From field %q has control characters", from[0]))
	}
	author, err := parseFrom(from[0])
	if err != nil {
		return r.leave(req, fmt.Sprintf("the From field %q: %v", from[0], err))
	}
	local, domain := splitAddress(author.addr)
	if domain != d.FromDomain {
		// The gateway's DMARC check read another From domain than we did:
		// rewriting an address it did not check would vouch for it.
		return r.leave(req, fmt.Sprintf("the From domain %q is not the one DMARC checked, %q", domain, d.FromDomain))
	}
	addr, ok := r.mint(local, domain, req.UTF8)
	if !ok {
		return r.leave(req, fmt.Sprintf("no reply address for %q: the local part is not a dot-atom, or it is too long", author.addr))
	}
	v := sdk.Continue().
		RemoveHeader("From").
		AddHeader("From", r.newFrom(author, addr)).
		AddHeader(resultsField, result(d, addr))
	if len(replyTo) == 0 {
		// As the author wrote it, so that replies go to the author
		// directly, with the name they gave.
		v = v.AddHeader("Reply-To", from[0])
	}
	return v
}

// newFrom is the rewritten From: the author's name "via" our domain, and
// the reply address. A name that is not ASCII is encoded (RFC 2047), as
// net/mail does; a name in a charset that it cannot decode is kept as the
// author encoded it.
func (r *rewriter) newFrom(author *parsedFrom, addr string) string {
	via := " via " + r.domain
	if author.rawName != "" {
		// An encoded word, then a quoted string: a phrase of two words.
		return author.rawName + ` "` + strings.TrimPrefix(via, " ") + `" <` + addr + ">"
	}
	name := author.name
	if name == "" {
		// No name: the address in words, so that the reader still sees
		// whose mail it is, and no "@" that mail filters take for a
		// spoofed address in the name.
		name = strings.Replace(author.addr, "@", " at ", 1)
	}
	return (&mail.Address{Name: name + via, Address: addr}).String()
}

// result is the gateway's dmarc entry with what we did in its comment.
func result(d *abi.DMARC, addr string) string {
	c := "p=" + d.Policy
	if d.Reason != "" {
		c += ", " + d.Reason
	}
	c += "; From rewritten to " + addr + ": "
	if d.DKIMAligned {
		c += "rewrite_signed, the author's signature may not survive our changes"
	} else {
		c += "no aligned DKIM signature to survive forwarding"
	}
	return "dmarc=pass (" + commentText(c) + ") header.from=" + d.FromDomain
}

// leave continues without a rewrite and logs why.
func (r *rewriter) leave(req *sdk.Request, why string) sdk.Verdict {
	sdk.Log(abi.LogInfo, fmt.Sprintf("session %s: From not rewritten: %s", req.SessionID, printable(why)))
	return sdk.Continue()
}

// deferred answers a header that could not be read: a failure on our side,
// so the sender retries rather than the mail going out to be refused.
func (r *rewriter) deferred(err error) sdk.Verdict {
	sdk.Log(abi.LogWarn, "reading the header: "+err.Error())
	return sdk.Tempfail(451, "4.3.0", "Cannot rewrite the From field now, try again later")
}

// parsedFrom is the author's mailbox from the From field.
type parsedFrom struct {
	name string // the display name, decoded
	addr string // local@domain, the domain in lower-case A-labels
	// rawName is the display name as written when it is in a charset we
	// cannot decode; name is then empty.
	rawName string
}

// errCharset is the decoder's answer to a charset it does not know.
var errCharset = errors.New("unknown charset")

// parseFrom reads one mailbox from a From field's value. Its domain comes
// back in lower-case A-labels.
func parseFrom(value string) (*parsedFrom, error) {
	unknown := false // net/mail does not wrap the decoder's error
	p := &mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(string, io.Reader) (io.Reader, error) { unknown = true; return nil, errCharset },
	}}
	a, err := p.Parse(value)
	var out parsedFrom
	if err != nil && unknown {
		// The name is in a charset that is neither UTF-8 nor Latin-1:
		// keep it as written, before the angle bracket.
		lt := strings.LastIndex(value, "<")
		if lt < 0 {
			return nil, err
		}
		out.rawName = strings.TrimSpace(value[:lt])
		a, err = mail.ParseAddress(value[lt:])
	}
	if err != nil {
		return nil, err
	}
	if out.rawName == "" {
		out.name = a.Name
	}
	local, domain := splitAddress(a.Address)
	ascii, err := idna.Lookup.ToASCII(domain)
	if err != nil {
		return nil, fmt.Errorf("domain %q: %v", domain, err)
	}
	out.addr = local + "@" + strings.ToLower(ascii)
	return &out, nil
}

// splitAddress splits an address at its last "@".
func splitAddress(addr string) (local, domain string) {
	at := strings.LastIndex(addr, "@")
	return addr[:at], addr[at+1:]
}

// commentText makes text fit in an RFC 5322 comment, as the gateway writes
// its own: no parentheses or backslashes, no line breaks, single spaces.
func commentText(s string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		switch r {
		case '(', ')', '\\', '\r', '\n':
			return ' '
		}
		return r
	}, s)), " ")
}

// control reports whether r is a control character other than a tab,
// which a header field's value may not hold.
func control(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// printable makes text from the message safe for a reply line or a log:
// the gateway treats a control character there as a broken plugin.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
