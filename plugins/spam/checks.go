package main

import (
	"net/mail"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// findings collects the symbols found, each once, in the order found.
type findings struct {
	scores map[string]float64 // the configured weights
	list   []abi.Finding
	seen   map[string]bool
}

func newFindings(scores map[string]float64) *findings {
	return &findings{scores: scores, seen: map[string]bool{}}
}

// add records symbol with its configured weight; a weight of 0 is a check
// turned off.
func (f *findings) add(symbol string) { f.addScore(symbol, f.scores[symbol]) }

func (f *findings) addScore(symbol string, score float64) {
	if score == 0 || f.seen[symbol] {
		return
	}
	f.seen[symbol] = true
	f.list = append(f.list, abi.Finding{Symbol: symbol, Score: score})
}

// authentication scores what the gateway found about the message's
// authenticity. An empty result means the gateway did not check.
func authentication(f *findings, a *abi.Auth) {
	switch a.SPF.Result {
	case "pass":
		f.add(spfAllow)
	case "fail":
		f.add(spfFail)
	case "softfail":
		f.add(spfSoftfail)
	case "neutral":
		f.add(spfNeutral)
	case "none":
		f.add(spfNone)
	case "permerror":
		f.add(spfPermfail)
	case "temperror":
		f.add(spfDNSFail)
	}
	// One passing signature is enough: a broken one beside it is often
	// a mailing list's footer.
	switch {
	case dkimResult(a.DKIM, "pass"):
		f.add(dkimAllow)
	case dkimResult(a.DKIM, "fail"):
		f.add(dkimReject)
	case dkimResult(a.DKIM, "permerror"):
		f.add(dkimPermfail)
	case dkimResult(a.DKIM, "temperror"):
		f.add(dkimTempfail)
	case len(a.DKIM) == 0 && a.SPF.Result != "":
		f.add(dkimNone)
	}
	switch a.DMARC.Result {
	case "pass":
		f.add(dmarcAllow)
	case "fail":
		switch a.DMARC.Policy {
		case "reject":
			f.add(dmarcReject)
		case "quarantine":
			f.add(dmarcQuarantine)
		default:
			f.add(dmarcSoftfail)
		}
	case "none":
		f.add(dmarcNone)
	case "permerror":
		// A permerror about the From field is scored with the From
		// field (fromField), not as a broken record.
		if !fromAtFault(&a.DMARC) {
			f.add(dmarcBadPolicy)
		}
	case "temperror":
		f.add(dmarcDNSFail)
	}
	switch a.ARC.Result {
	case "pass":
		f.add(arcAllow)
	case "fail":
		f.add(arcReject)
	}
}

// dkimResult reports whether a signature has this result. (A map of the
// results costs more than looking through the few signatures again.)
func dkimResult(sigs []abi.DKIM, result string) bool {
	for _, d := range sigs {
		if d.Result == result {
			return true
		}
	}
	return false
}

// client scores the connecting host: its forward-confirmed reverse DNS,
// and its HELO name.
func (c *config) client(f *findings, req *sdk.Request) {
	switch req.ClientNameResult {
	case "none":
		f.add(rdnsNone)
	case "fail":
		f.add(rdnsFail)
	case "temperror":
		f.add(rdnsDNSFail)
	}
	helo := strings.TrimSuffix(strings.TrimSpace(req.Helo), ".")
	if helo == "" {
		return
	}
	if bareIP(helo) {
		f.add(heloBareIP)
		return
	}
	if f.scores[heloNoRes] != 0 {
		if _, ok := domainName(helo); ok && resolves(helo) == no {
			f.add(heloNoRes)
		}
	}
}

// bareIP reports whether a HELO name is an address: an address literal
// ([192.0.2.1], [IPv6:2001:db8::1]) or an address without brackets.
func bareIP(helo string) bool {
	if strings.HasPrefix(helo, "[") && strings.HasSuffix(helo, "]") {
		return true
	}
	_, err := netip.ParseAddr(helo)
	return err == nil
}

// headers scores the header fields of the message.
func (c *config) headers(f *findings, h mail.Header, now time.Time) {
	switch date := h.Get("Date"); {
	case date == "":
		f.add(missingDate)
	default:
		t, err := parseDate(date)
		switch {
		case err != nil:
			f.add(invalidDate)
		case t.Sub(now) > c.dateFuture:
			f.add(dateFuture)
		case now.Sub(t) > c.datePast:
			f.add(datePast)
		}
	}
	switch id := h.Get("Message-Id"); {
	case id == "":
		f.add(missingMID)
	case !validMessageID(id):
		f.add(invalidMID)
	}
	subject, ok := h["Subject"]
	switch {
	case !ok:
		f.add(noSubject)
	case strings.TrimSpace(decodeWords(subject[0])) == "":
		f.add(emptySubject)
	case c.allCapitals(decodeWords(subject[0])):
		f.add(subjAllCaps)
	}
}

// usualDate is the form RFC 5322 §3.3 prefers and nearly every mailer
// writes: "Mon, 7 Dec 2026 00:23:45 +0000".
const usualDate = "Mon, 2 Jan 2006 15:04:05 -0700"

// parseDate is mail.ParseDate, which tries 48 layouts in order and makes
// an error value for each that fails: 24 fail on a date that starts with
// its day of the week, before the first with one, usualDate, matches.
// Trying usualDate first answers the same for every date: one that
// time.Parse reads whole with it starts with a weekday, so every earlier
// layout fails on it (they start with the day's digits), and it holds
// nothing that ParseDate would cut off or change (no CR, LF or leading
// space, nothing after the zone, no sign before it).
func parseDate(date string) (time.Time, error) {
	if t, err := time.Parse(usualDate, date); err == nil {
		return t, nil
	}
	return mail.ParseDate(date)
}

// fromField scores the From field: missing, malformed, or showing another
// address than its own. dmarc is the gateway's DMARC result, which can say
// the From field is at fault where the plugin's reading found no fault.
func (c *config) fromField(f *findings, h mail.Header, dmarc *abi.DMARC) {
	from, problem := parseFrom(h["From"])
	if problem == "" && fromAtFault(dmarc) {
		problem = fromInvalid
	}
	if problem != "" {
		f.add(problem)
	}
	if from == nil {
		return
	}
	if spoofedName(from) {
		f.add(spoofName)
	}
	// An absent Reply-To is no address list: parsing "" only fails.
	if rt := h.Get("Reply-To"); rt == "" {
		return
	} else if replyTo, err := addressParser.ParseList(rt); err == nil {
		fromDomain := domainOf(from.Address)
		for _, r := range replyTo {
			d := domainOf(r.Address)
			if c.freemail[d] && d != fromDomain {
				f.add(freemailRTo)
			}
		}
	}
}

// parseFrom reads the From field of RFC 5322 §3.6.2: one field, one
// address. A field that does not parse strictly is read leniently, as a
// mail reader shows it: its last <addr-spec> is the address and what comes
// before it the display name. That is where spoofs live: an unquoted
// `support@bank.example <x@elsewhere.example>` is not RFC 5322 (an @ needs
// quotes in a display name), and readers show it all the same. problem is
// missingFrom, fromInvalid, or "".
func parseFrom(fields []string) (from *mail.Address, problem string) {
	if len(fields) == 0 || len(fields) == 1 && strings.TrimSpace(fields[0]) == "" {
		return nil, missingFrom
	}
	if len(fields) > 1 {
		problem = fromInvalid
	}
	if a, err := addressParser.Parse(fields[0]); err == nil {
		return a, problem
	}
	return lenientAddress(fields[0]), fromInvalid
}

// lenientAddress reads the last <local@domain> of a field and the text
// before it as the display name, its encoded words decoded; nil if the
// field has no such address.
func lenientAddress(field string) *mail.Address {
	open := strings.LastIndexByte(field, '<')
	if open < 0 {
		return nil
	}
	spec, _, closed := strings.Cut(field[open+1:], ">")
	local, domain, _ := strings.Cut(strings.TrimSpace(spec), "@")
	if !closed || local == "" || domain == "" || strings.Contains(domain, "@") {
		return nil
	}
	name := strings.Trim(field[:open], " \t\"")
	return &mail.Address{Name: decodeWords(name), Address: strings.TrimSpace(spec)}
}

// fromAtFault reports whether the gateway's DMARC permerror is about the
// From field rather than a record. The gateway gives permerror when the
// From field does not hold one address with a domain name (its reason says
// which: "the From field is not an address list: ..."), before it looks
// for a record, so without a policy domain; a record it cannot use is no
// record (none). A permerror with a policy domain is about that record.
func fromAtFault(d *abi.DMARC) bool {
	return d.Result == "permerror" && d.PolicyDomain == ""
}

// validMessageID reports whether a Message-ID field is one msg-id of RFC
// 5322 §3.6.4 in its usual form: <left@right>, without spaces.
func validMessageID(id string) bool {
	id = strings.TrimSpace(id)
	if len(id) < 5 || id[0] != '<' || id[len(id)-1] != '>' {
		return false
	}
	left, right, ok := strings.Cut(id[1:len(id)-1], "@")
	return ok && left != "" && right != "" && !strings.ContainsAny(id[1:len(id)-1], " \t<>") && !strings.Contains(right, "@")
}

// allCapitals reports whether a subject shouts: enough letters, and none
// of them in lower case.
func (c *config) allCapitals(s string) bool {
	n := 0
	for _, r := range s {
		switch {
		case unicode.IsLower(r):
			return false
		case unicode.IsUpper(r):
			n++
		}
	}
	return n >= c.minCaps
}

// addressInText finds an email address in a display name.
func addressInText(s string) string {
	for word := range strings.FieldsFuncSeq(s, func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune(`"'<>()[],;`, r)
	}) {
		if local, domain, ok := strings.Cut(word, "@"); ok && local != "" && strings.Contains(domain, ".") {
			return word
		}
	}
	return ""
}

// spoofedName reports whether a From field's display name shows an
// address other than the one it is from: "support@bank.example"
// <x@elsewhere.example>.
func spoofedName(a *mail.Address) bool {
	shown := addressInText(a.Name)
	return shown != "" && !strings.EqualFold(shown, a.Address)
}

// domainOf is the domain of an address, in lower case.
func domainOf(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return strings.ToLower(strings.TrimSuffix(d, "."))
}

// body scores what the MIME walk found.
func (c *config) body(f *findings, m *message) {
	if m.hasHTML && !m.hasText {
		f.add(htmlOnly)
	}
	if m.hiddenText {
		f.add(hiddenText)
	}
	for _, l := range m.links {
		switch {
		case isIPHost(l.host):
			f.add(urlIP)
		case c.shortener(l.host):
			f.add(urlShort)
		}
		if phishingLink(l) {
			f.add(phishing)
		}
	}
	for _, name := range m.attachments {
		if s := attachmentSymbol(name); s != "" {
			f.add(s)
		}
	}
}
