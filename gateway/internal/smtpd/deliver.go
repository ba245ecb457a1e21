package smtpd

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/auth"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// deliver runs the data stage, makes the message we forward, and relays
// it. It returns the reply to DATA and who decided it; a message dropped
// by policy (every recipient discarded) gets 250, and s.txn.dropped.
func (s *session) deliver(msg []byte) (*smtp.SMTPError, decider) {
	if reply := s.lineEndings(msg); reply != nil {
		s.closeRelay()
		return reply, byHost
	}
	// From here on the message has CRLF line endings only: nothing in it
	// can end it early at a next hop that is lenient about line endings.
	msg = message.NormalizeLineEndings(msg)
	block, body := message.Split(msg)
	if max := s.srv.cfg.MaxHeaderFields; max > 0 {
		// Every part that reads fields (plugins, DKIM, ARC, DMARC) pays
		// for each one, and parsing them costs memory for each; a few
		// thousand would cost them all. Counted before they are parsed.
		if n := headerFields(block); n > max {
			s.closeRelay()
			return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf("Too many header fields (%d; the limit is %d)", n, max)}, byHost
		}
	}
	// The header is parsed here, once: every check, the plugins, signing
	// and sealing read this value (or a view of it without fields, or with
	// ours on top) rather than scanning the block again.
	header := message.ParseHeader(block)
	// The body likewise gets one value, whose canonical hashes the first
	// check or signature that needs them computes for the others: DKIM
	// and ARC, verified and made, four hashes of the same bytes.
	hashed := dkim.NewBody(body)
	if s.srv.cfg.Activity != nil {
		s.txn.readHeader(header, s.srv.cfg.RecordSubject)
	}
	header = auth.StripForged(header, s.srv.cfg.Hostname)
	if hops := header.Count("Received"); hops >= s.srv.cfg.MaxHops {
		s.closeRelay()
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6}, Message: fmt.Sprintf("Too many hops (%d Received fields): mail loop?", hops)}, byHost
	}
	if s.srv.cfg.Submission {
		domains, reply := s.submittedFrom(header)
		if reply != nil {
			s.closeRelay()
			return reply, byHost
		}
		s.txn.fromDomains = domains
	}
	var report *auth.Report
	if a := s.gen.Auth; a != nil && !s.srv.cfg.Submission {
		// Submitted mail comes from a user who logged in: SPF, DKIM,
		// ARC and DMARC of its client say nothing, and no ARC set or
		// DMARC record follows from them.
		r := a.Message(s.srv.ctx, header, hashed, s.txn.spf.Wait(s.srv.ctx))
		report = &r
		if s.srv.cfg.Activity != nil {
			s.txn.keepAuth(r.Auth)
		}
		s.srv.metrics.authChecked(r.Auth)
	}
	var out plugin.Outcome
	if s.chain().Handles(abi.StageData) {
		req := s.request(abi.StageData, "")
		req.Size = uint64(len(msg))
		if report != nil {
			req.Auth = report.Auth
		}
		out = s.runRequest(req, &plugin.Message{Header: header, Body: body})
	}
	switch out.Action {
	case abi.Reject, abi.Tempfail:
		s.closeRelay()
		if out.Action == abi.Reject {
			s.recordDMARC(report, dispositionReject)
		}
		return out.Reply, pluginDecider(out)
	case abi.Discard:
		s.closeRelay()
		s.recordDMARC(report, dispositionReject)
		s.txn.discarded = append(s.txn.discarded, s.txn.rcpts...)
		s.txn.forwards, s.txn.queued = nil, nil
		s.txn.dropped = true
		return out.Reply, pluginDecider(out)
	}
	s.txn.changes.merge(out)
	sc := s.txn.score()
	if reply := s.judge(sc); reply != nil {
		s.closeRelay()
		s.recordDMARC(report, dispositionReject)
		return reply, byHost
	}
	if len(s.txn.forwards) == 0 && len(s.txn.queued) == 0 {
		// Every recipient was dropped at RCPT.
		s.txn.dropped = true
		if s.txn.dropReply == nil {
			return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK"}, s.txn.dropper()
		}
		return s.txn.dropReply, s.txn.dropper()
	}

	buf := s.srv.headers.get()
	defer s.srv.headers.put(buf)
	fwd, err := s.forwardedHeader(buf, header, hashed, report, sc)
	if err != nil {
		s.closeRelay()
		s.srv.log.Error("sealing or signing failed", "session", s.id, "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Signing failed, try again later"}, byHost
	}
	if len(s.txn.forwards) == 0 {
		// Every destination is queued: the queue's word is the reply.
		s.closeRelay()
		if err := s.enqueue(fwd, body, report); err != nil {
			return queueFailed(), byQueue
		}
		s.recordDMARC(report, s.txn.disposition())
		return queuedReply(s.txn.queueIDs), byQueue
	}
	reply, err := s.txn.relay.Data(s.srv.ctx, fwd, body)
	s.srv.metrics.relayReply("data", err)
	s.srv.metrics.tlsUsed("outbound", s.txn.relay.TLSVersion())
	s.txn.remote = s.txn.relay.Remote()
	s.closeRelay()
	if err != nil {
		// Refused in session: the copies for other domains are not
		// queued, and the client's retry tries them all again. A
		// refusal for good settles the message's fate; a 4xx does not,
		// so a retried message counts once in DMARC reports.
		reply = asSMTPError(err)
		if reply.Code >= 500 {
			s.recordDMARC(report, s.txn.disposition())
		}
		return reply, byDestination
	}
	if len(s.txn.queued) > 0 {
		if err := s.enqueue(fwd, body, report); err != nil {
			return queueFailed(), byQueue
		}
	}
	s.recordDMARC(report, s.txn.disposition())
	return reply, byDestination
}

// disposition is what became of a message that left, for DMARC reports:
// quarantined (marked) or not.
func (t *transaction) disposition() string {
	if t.changes.quarantine != "" {
		return dispositionQuarantine
	}
	return dispositionNone
}

// lineEndings applies the bare line ending policy: with reject, a message
// with a CR or LF outside a CRLF is refused (as Postfix's
// smtpd_forbid_bare_newline = reject does); otherwise each is turned into
// CRLF. The message was read to its real end, CRLF.CRLF, so the session
// goes on either way.
func (s *session) lineEndings(msg []byte) *smtp.SMTPError {
	if !s.srv.cfg.RejectBareLineEndings {
		return nil
	}
	if n := message.BareLineEndings(msg); n > 0 {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message: fmt.Sprintf("Message refused: %d bare CR or LF line endings; lines must end in CRLF (RFC 5321 section 2.3.8)", n)}
	}
	return nil
}

// forwardedHeader is the header of the message as it leaves, through
// the empty line: our trace and result fields and the plugins' changes on
// top of the original, then DKIM signatures and an ARC set over all of
// it and the body. The body leaves as it came, from the buffer it was
// read into: copying it behind the new header would hold a second copy
// of every message in flight. It is made in *buf, which it may grow.
func (s *session) forwardedHeader(buf *[]byte, header *message.Header, body *dkim.Body, report *auth.Report, sc score) ([]byte, error) {
	kept := header.Without(s.txn.changes.remove...)
	if s.srv.cfg.Submission {
		kept = kept.Without(submissionRemoved...)
	}
	b := newOutgoing(*buf, header.Size()+4096)
	defer func() { *buf = b.buf }()
	// What plugins record under Authentication-Results joins our own field
	// rather than standing alone without an authserv-id.
	var recorded []string
	var added []abi.Header
	for _, h := range s.txn.changes.add {
		if strings.EqualFold(h.Name, "Authentication-Results") && (report != nil || s.srv.cfg.Submission) {
			recorded = append(recorded, h.Value)
		} else {
			added = append(added, h)
		}
	}
	var results string
	if report != nil {
		mailFrom, _ := s.traceAddress(s.txn.from)
		results = report.Results(mailFrom, s.conn.Hostname(), recorded...)
		b.write(message.FormatField("Authentication-Results", s.srv.cfg.Hostname+"; "+results))
	}
	signAs := s.txn.recipientDomain(s.gen.SignRecipientDomain)
	if s.srv.cfg.Submission {
		b.write(message.FormatField("Authentication-Results", s.srv.cfg.Hostname+"; "+s.submissionResults(recorded)))
		b.write(s.submissionReceived())
		s.submissionFields(b, header)
		// Signed for its From domains, so that DMARC aligns at the
		// destination.
		signAs = s.txn.fromDomains
	} else {
		b.write(s.receivedField())
	}
	for _, h := range added {
		b.write(message.FormatField(h.Name, h.Value))
	}
	if q := s.txn.changes.quarantine; q != "" {
		b.write(message.FormatField("X-Sluice-Quarantine", q))
	}
	if len(sc.symbols) > 0 {
		b.write(message.FormatField("X-Sluice-Score", sc.String()))
	}
	ours := len(b.bytes())
	b.buf = kept.AppendTo(b.buf)
	b.writeString("\r\n")

	// What is signed is the header as it leaves: our fields, parsed now,
	// on top of the original's kept fields as they were parsed in deliver.
	// DKIM first, then ARC (RFC 8617 §5.1): the seal then covers our own
	// signatures too.
	signed := kept.Prepend(b.bytes()[:ours])
	if signer := s.gen.Signer; signer != nil {
		sigs, err := signer.SignParts(signed, body, signAs...)
		if err != nil {
			return nil, fmt.Errorf("DKIM: %w", err)
		}
		b.prepend(sigs)
		signed = signed.Prepend(sigs)
	}
	if c := s.gen.Seal; c != nil && report != nil {
		set, err := arc.SealParts(signed, body, s.srv.cfg.Hostname, results, report.ARC, *c)
		if err != nil {
			return nil, fmt.Errorf("ARC: %w", err)
		}
		b.prepend(set)
	}
	return b.bytes(), nil
}

// recipientDomain is the domain whose own DKIM keys sign forwarded mail
// besides the gateway's, with [dkim] sign_recipient_domain: the one
// domain every recipient of the transaction is at. Recipients at several
// domains get none of theirs: every copy carries the same signatures, so
// a recipient at one of our domains would find in d= another that the
// message also went to, a Bcc included.
func (t *transaction) recipientDomain(on bool) []string {
	if !on || len(t.rcpts) == 0 {
		return nil
	}
	var domain string
	for i, r := range t.rcpts {
		at := strings.LastIndexByte(r, '@')
		d := strings.ToLower(r[at+1:])
		if at < 0 || (i > 0 && d != domain) {
			return nil
		}
		domain = d
	}
	return []string{domain}
}

// Scoring is what a message's score leads to: the [scoring] section of
// gateway.toml. A threshold of 0 is off.
type Scoring struct {
	Reject     float64 // refuse with 550 5.7.1 at this score or more
	Quarantine float64 // mark with X-Sluice-Quarantine at this score or more
}

// score is what the findings of a transaction add up to.
type score struct {
	total   float64
	symbols []abi.Finding // each symbol once, highest score first
}

// score adds up the findings of every plugin at every stage of the
// transaction. A symbol counts once: found again (at another stage, for
// another recipient, or by another plugin) its last score stands, so that
// a plugin asked once per recipient does not multiply its own finding.
func (t *transaction) score() score {
	var sc score
	seen := map[string]int{}
	for _, v := range t.verdicts {
		for _, f := range v.Findings {
			if i, ok := seen[f.Symbol]; ok {
				sc.symbols[i].Score = f.Score
				continue
			}
			seen[f.Symbol] = len(sc.symbols)
			sc.symbols = append(sc.symbols, f)
		}
	}
	for _, f := range sc.symbols {
		sc.total += f.Score
	}
	sort.SliceStable(sc.symbols, func(i, j int) bool { return sc.symbols[i].Score > sc.symbols[j].Score })
	return sc
}

// maxScoreText bounds the list of symbols in a reply or field: an SMTP
// reply line may be 512 bytes (RFC 5321 §4.5.3.1.5).
const maxScoreText = 300

// String is "16.5 (SYMBOL_A=10, SYMBOL_B=6.5)", the most significant
// symbols first, cut short with "..." if the list is long.
func (sc score) String() string {
	var b strings.Builder
	b.WriteString(formatScore(sc.total))
	b.WriteString(" (")
	for i, f := range sc.symbols {
		item := f.Symbol + "=" + formatScore(f.Score)
		if i > 0 {
			if b.Len()+len(item) > maxScoreText {
				b.WriteString(", ...")
				break
			}
			b.WriteString(", ")
		}
		b.WriteString(item)
	}
	b.WriteString(")")
	return b.String()
}

// formatScore writes a score with at most two decimals, so that sums of
// decimal fractions read as the operator wrote them (0.1+0.2 is "0.3").
func formatScore(f float64) string {
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}

// judge applies the [scoring] thresholds: a message at the reject
// threshold is refused (the reply it returns); one at the quarantine
// threshold is marked, unless a plugin already quarantined it.
func (s *session) judge(sc score) *smtp.SMTPError {
	t := s.gen.Scoring
	if t.Reject > 0 && sc.total >= t.Reject {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message scored " + sc.String()}
	}
	if t.Quarantine > 0 && sc.total >= t.Quarantine && s.txn.changes.quarantine == "" {
		s.txn.changes.quarantine = "score " + sc.String()
	}
	return nil
}

// headerFields counts the fields of a header block: its lines that do not
// continue the one before.
func headerFields(header []byte) int {
	n := 0
	for len(header) > 0 {
		if header[0] != ' ' && header[0] != '\t' {
			n++
		}
		i := bytes.IndexByte(header, '\n')
		if i < 0 {
			break
		}
		header = header[i+1:]
	}
	return n
}

func (s *session) closeRelay() {
	if s.txn.relay != nil {
		s.txn.remote = s.txn.relay.Remote()
		s.txn.relay.Close()
		s.txn.relay = nil
	}
}

// receivedField is our trace field (RFC 5321 §4.4), with the protocol
// names of RFC 3848.
func (s *session) receivedField() []byte {
	proto := "ESMTP"
	if s.txn.utf8() {
		proto = "UTF8SMTP"
	}
	if _, ok := s.conn.TLSConnectionState(); ok {
		proto += "S"
	}
	// The client as it named itself, then as we know it: its verified
	// name, if it has one, and its address (as Postfix writes it).
	client := addrLiteral(s.clientIP.String())
	if name, _ := s.name.wait(s.srv.ctx); name != "" {
		client = name + " " + client
	}
	v := fmt.Sprintf("from %s (%s) by %s (Sluice) with %s id %s", s.conn.Hostname(), client, s.srv.cfg.Hostname, proto, s.id)
	if len(s.txn.rcpts) == 1 {
		if rcpt, ok := s.traceAddress(s.txn.rcpts[0]); ok {
			v += fmt.Sprintf(" for <%s>", rcpt)
		}
	}
	v += "; " + time.Now().Format(time.RFC1123Z)
	return message.FormatField("Received", v)
}

// traceAddress is addr as our own header fields name it. Towards a
// destination that takes UTF-8 (the transaction said SMTPUTF8), as it is;
// otherwise with its domain as A-labels, and ok is false if its local part
// is not ASCII: our own fields must never be what makes a message need
// SMTPUTF8 (RFC 6532). A message with queued copies is one header for
// destinations not asked yet, which may not take UTF-8.
func (s *session) traceAddress(addr string) (string, bool) {
	if s.txn.relay != nil && s.txn.relay.SMTPUTF8() && len(s.txn.queued) == 0 {
		return addr, true
	}
	if a, err := address.WithASCIIDomain(addr); err == nil {
		addr = a
	}
	return addr, !address.NeedsSMTPUTF8(addr)
}

func addrLiteral(ip string) string {
	if bytes.IndexByte([]byte(ip), ':') >= 0 {
		return "[IPv6:" + ip + "]"
	}
	return "[" + ip + "]"
}

func asSMTPError(err error) *smtp.SMTPError {
	if e, ok := err.(*smtp.SMTPError); ok {
		return e
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure: " + err.Error()}
}
