package main

import (
	"encoding/binary"
	"reflect"
	"strconv"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// probeCase is one request of the conformance checks.
type probeCase struct {
	stage abi.Stage
	name  string // which session and format, for the report
	req   []byte // encoded
	msg   *plugin.Message
}

// session is the whole of one SMTP session, from which the request at
// each stage is cut.
type session struct {
	name                       string
	clientIP, clientName, helo string
	tls, utf8                  bool
	from                       string
	rcpts                      []string
	auth                       abi.Auth
	message                    string
}

// probeCases returns the requests for the stages in set: each of a range
// of sessions, at each stage, in each format a host of ABI version 1 may
// send.
func probeCases(set abi.StageSet) []probeCase {
	var cases []probeCase
	for _, s := range probeSessions() {
		for _, st := range abi.Stages() {
			if !set.Has(st) {
				continue
			}
			req := s.at(st)
			var msg *plugin.Message
			if st == abi.StageData {
				msg = plugin.NewMessage([]byte(s.message))
				req.Size = uint64(len(msg.Header.Bytes()) + 2 + len(msg.Body))
			}
			for _, f := range formats(&req) {
				cases = append(cases, probeCase{stage: st, name: s.name + ", " + f.name, req: f.req, msg: msg})
			}
		}
	}
	return cases
}

// at returns the request the gateway sends at stage st of the session: what
// is known by then, and nothing of later stages.
func (s *session) at(st abi.Stage) abi.Request {
	r := abi.Request{Stage: st, SessionID: "check-" + s.name, ClientIP: s.clientIP, ClientName: s.clientName}
	if st == abi.StageConnect {
		return r
	}
	r.Helo, r.TLS = s.helo, s.tls
	if st == abi.StageHelo || st == abi.StageClose {
		return r
	}
	r.MailFrom, r.UTF8 = s.from, s.utf8
	switch st {
	case abi.StageRcpt:
		// The last recipient, the others accepted before it.
		r.Rcpts, r.Rcpt = s.rcpts[:len(s.rcpts)-1], s.rcpts[len(s.rcpts)-1]
	case abi.StageData:
		r.Rcpts, r.Auth = s.rcpts, s.auth
	}
	return r
}

type format struct {
	name string
	req  []byte
}

// fieldsBeforeAuth is how many fields a Request had before the Auth fields
// were appended (sdk/ABI.md: fields 1 to 11).
const fieldsBeforeAuth = 11

// formats encodes req as hosts of ABI version 1 may: the current encoding;
// an older host's, which ends before the Auth fields; the shortest, with
// trailing zero fields left out (a decoder reads them as zero); and a
// newer host's, with fields appended that this ABI does not define yet.
func formats(req *abi.Request) []format {
	current := abi.AppendRequest(nil, req)
	out := []format{{"current format", current}}

	old := *req
	old.Auth = abi.Auth{}
	authBytes := len(abi.AppendRequest(nil, &abi.Request{})) - fieldsBeforeAuth
	older := abi.AppendRequest(nil, &old)
	older = older[:len(older)-authBytes]
	if decodesTo(older, &old) {
		out = append(out, format{"older format (no Auth fields)", older})
	}

	minimal := current
	for len(minimal) > 0 && minimal[len(minimal)-1] == 0 {
		minimal = minimal[:len(minimal)-1]
	}
	if len(minimal) < len(current) && decodesTo(minimal, req) {
		out = append(out, format{"minimal format (trailing zero fields left out)", minimal})
	}

	newer := append([]byte(nil), current...)
	newer = binary.AppendUvarint(newer, uint64(len("a field of a later minor version")))
	newer = append(newer, "a field of a later minor version"...)
	newer = binary.AppendUvarint(newer, 1<<40)
	out = append(out, format{"newer format (unknown fields appended)", newer})
	return out
}

// decodesTo reports whether b decodes to want, so that a shortened
// encoding is only used when it still says the same.
func decodesTo(b []byte, want *abi.Request) bool {
	var got abi.Request
	if abi.DecodeRequest(b, &got) != nil {
		return false
	}
	return reflect.DeepEqual(normal(got), normal(*want))
}

// normal makes empty lists nil, which the encoding does not tell apart.
func normal(r abi.Request) abi.Request {
	if len(r.Rcpts) == 0 {
		r.Rcpts = nil
	}
	if len(r.Auth.DKIM) == 0 {
		r.Auth.DKIM = nil
	}
	if len(r.Auth.ARC.Sealers) == 0 {
		r.Auth.ARC.Sealers = nil
	}
	return r
}

// probeSessions are the sessions of the checks: ordinary mail, edge cases
// a plugin must survive (the null sender, IPv6, SMTPUTF8, empty fields, a
// hundred recipients, long names, a large message, every Auth field set),
// and nothing that is not a valid request.
func probeSessions() []session {
	many := make([]string, 100)
	for i := range many {
		many[i] = "user" + strconv.Itoa(i) + "@example.test"
	}
	many[99] = "INFO+news@Example.TEST"
	return []session{
		{
			name: "plain", clientIP: "192.0.2.1", clientName: "mail.example.org", helo: "mail.example.org", tls: true,
			from: "sender@example.org", rcpts: []string{"info@example.test"},
			auth: abi.Auth{
				SPF:   abi.SPF{Result: "pass", Domain: "example.org", Helo: "pass"},
				DKIM:  []abi.DKIM{{Result: "pass", Domain: "example.org", Selector: "s1"}},
				ARC:   abi.ARC{Result: "none"},
				DMARC: abi.DMARC{Result: "pass", FromDomain: "example.org", PolicyDomain: "example.org", Policy: "reject", Pct: 100, SPFAligned: true, DKIMAligned: true},
			},
			message: plainMessage,
		},
		{
			name: "bounce", clientIP: "2001:db8::25", helo: "[IPv6:2001:db8::25]",
			from: "", rcpts: []string{"postmaster@example.test"},
			auth: abi.Auth{
				SPF:   abi.SPF{Result: "none", Helo: "none"},
				ARC:   abi.ARC{Result: "none"},
				DMARC: abi.DMARC{Result: "none", FromDomain: "mx.example.net"},
			},
			message: bounceMessage,
		},
		{
			name: "utf8", clientIP: "198.51.100.7", clientName: "relay.exemple.test", helo: "relay.exemple.test", utf8: true,
			from: "pelé@exemple.test", rcpts: []string{"δοκιμή@example.test"},
			auth: abi.Auth{
				SPF:   abi.SPF{Result: "softfail", Domain: "exemple.test", Helo: "neutral"},
				DKIM:  []abi.DKIM{{Result: "fail", Domain: "exemple.test", Selector: "k", Reason: "body hash did not verify"}},
				ARC:   abi.ARC{Result: "fail", Instances: 1, Sealers: []string{"lists.example.org"}, Reason: "seal did not verify"},
				DMARC: abi.DMARC{Result: "fail", FromDomain: "exemple.test", PolicyDomain: "exemple.test", Policy: "reject", Pct: 100, Reason: "neither SPF nor DKIM aligned"},
			},
			message: utf8Message,
		},
		{
			name: "many recipients and attachments", clientIP: "203.0.113.9", clientName: "", helo: "client",
			from: "list-bounces+x=example.test@lists.example.org", rcpts: many,
			auth: abi.Auth{
				SPF: abi.SPF{Result: "temperror", Domain: "lists.example.org", Helo: "temperror"},
				DKIM: []abi.DKIM{
					{Result: "pass", Domain: "lists.example.org", Selector: "a"},
					{Result: "fail", Domain: "example.com", Selector: "b", Reason: "signature did not verify"},
				},
				ARC:   abi.ARC{Result: "pass", Instances: 2, OldestPass: 1, Sealers: []string{"lists.example.org", "fwd.example.net"}},
				DMARC: abi.DMARC{Result: "temperror", FromDomain: "example.com", Pct: 50, Reason: "DNS timeout"},
			},
			message: attachmentsMessage,
		},
		{name: "empty fields", clientIP: "127.0.0.1", rcpts: []string{"postmaster@example.test"}},
		{
			name: "long", clientIP: "192.0.2.255", clientName: strings.Repeat("a", 63) + ".example.org",
			helo: strings.Repeat("h", 63) + "." + strings.Repeat("e", 63) + ".example", tls: true,
			from: strings.Repeat("l", 64) + "@" + strings.Repeat("d", 63) + ".example", rcpts: []string{strings.Repeat("r", 64) + "@example.test"},
			auth:    abi.Auth{DMARC: abi.DMARC{Result: "permerror", Reason: strings.Repeat("reason ", 200)}},
			message: longMessage(),
		},
	}
}

const plainMessage = "Received: from mail.example.org (mail.example.org [192.0.2.1]) by mx.example.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
	"From: Sender <sender@example.org>\r\n" +
	"To: info@example.test\r\n" +
	"Subject: Hello\r\n" +
	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
	"Message-ID: <plain@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello,\r\nthis is a test.\r\n"

const bounceMessage = "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n" +
	"To: postmaster@example.test\r\n" +
	"Subject: Undelivered Mail Returned to Sender\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n" +
	"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
	"--b1--\r\n"

const utf8Message = "From: =?utf-8?q?Pel=C3=A9?= <pelé@exemple.test>\r\n" +
	"To: δοκιμή@example.test\r\n" +
	"Subject: =?utf-8?b?zrTOv866zrnOvM6u?=\r\n" +
	"Subject: a second Subject field,\r\n folded\r\n\tover three lines\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Γειά σου κόσμε\r\n"

const attachmentsMessage = "From: Someone <someone@example.com>\r\n" +
	"To: list@lists.example.org\r\n" +
	"Subject: [list] files\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--outer\r\nContent-Type: text/plain\r\n\r\nSee the files.\r\n" +
	"--outer\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n" +
	"--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n" +
	"--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n" +
	"--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n" +
	"--inner--\r\n" +
	"--outer\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n filename*=utf-8''setup%20tool.EXE\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n" +
	"--outer--\r\n"

// longMessage has many header fields, a very long folded one, and a body
// of 256 KiB.
func longMessage() string {
	var b strings.Builder
	for i := range 50 {
		b.WriteString("Received: from hop" + strconv.Itoa(i) + ".example.net by hop" + strconv.Itoa(i+1) + ".example.net; Mon, 1 Jan 2024 00:00:00 +0000\r\n")
	}
	b.WriteString("Subject:")
	for range 100 {
		b.WriteString(" " + strings.Repeat("word ", 14) + "\r\n")
	}
	b.WriteString("From: <" + strings.Repeat("l", 64) + "@" + strings.Repeat("d", 63) + ".example>\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for b.Len() < 256<<10 {
		b.WriteString(line)
	}
	return b.String()
}
