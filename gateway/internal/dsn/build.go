package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// MaxHeader bounds the original header a DSN quotes: a header that
// long is cut at a field boundary, so that a DSN stays small whatever it
// reports on.
const MaxHeader = 32 << 10

// built is a DSN or notice ready to sign: its header (fields, each
// ending in CRLF, without the empty line) and body.
type built struct {
	header, body []byte
	to           string // its one recipient
	utf8         bool   // it needs SMTPUTF8
	id           string // its queue ID, once queued
}

const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700" // RFC 5322 §3.3

// dsn makes a DSN (RFC 3464) about rcpts of m, to m.Sender: a
// multipart/report (RFC 6522) of an explanation, the delivery status and
// the original message's header. action is "failed" or "delayed".
func (n *Notifier) dsn(action string, m *queue.Message, rcpts []queue.Recipient) *built {
	now := n.cfg.Now()
	header, _ := message.Split(m.Data)
	header = bounded(header, MaxHeader)

	// RFC 6533: an address or reply that is not ASCII needs the global
	// types, whose fields are UTF-8; so does a header that is not.
	status := n.deliveryStatus(action, m, rcpts, now)
	statusType := "message/delivery-status"
	if !ascii(string(status)) {
		statusType = "message/global-delivery-status"
	}
	headersType := "text/rfc822-headers"
	if !ascii(string(header)) {
		headersType = "message/global-headers"
	}
	text := n.explanation(action, m, rcpts)

	boundary := "=_sluice_" + randomHex(12)
	var body bytes.Buffer
	body.WriteString("This is a delivery status notification (RFC 3464) in MIME format.\r\n")
	part := func(contentType string, content []byte) {
		body.WriteString("\r\n--" + boundary + "\r\n")
		body.Write(message.FormatField("Content-Type", contentType))
		body.Write(message.FormatField("Content-Transfer-Encoding", encoding(string(content))))
		body.WriteString("\r\n")
		body.Write(content)
	}
	part(textType(text), []byte(text))
	part(statusType, status)
	part(headersType, header)
	body.WriteString("\r\n--" + boundary + "--\r\n")

	subject := "Undelivered Mail Returned to Sender"
	if action == "delayed" {
		subject = "Delayed Mail (still being retried)"
	}
	h := n.header(m.Sender, subject, "auto-replied", now)
	h = append(h, message.FormatField("Content-Type",
		fmt.Sprintf(`multipart/report; report-type=delivery-status; boundary="%s"`, boundary))...)
	h = append(h, message.FormatField("Content-Transfer-Encoding", encoding(body.String()))...)
	return &built{header: h, body: body.Bytes(), to: m.Sender, utf8: !ascii(string(h)) || !ascii(body.String())}
}

// header is what a DSN and a notice start with. Auto-Submitted (RFC
// 3834) keeps auto-responders from answering it.
func (n *Notifier) header(to, subject, auto string, now time.Time) []byte {
	var h []byte
	h = append(h, message.FormatField("From", "Mail Delivery System <MAILER-DAEMON@"+n.fromDomain()+">")...)
	h = append(h, message.FormatField("To", "<"+to+">")...)
	h = append(h, message.FormatField("Subject", subject)...)
	h = append(h, message.FormatField("Date", now.Format(dateLayout))...)
	h = append(h, message.FormatField("Message-ID", "<"+randomHex(16)+"@"+n.cfg.Hostname+">")...)
	h = append(h, message.FormatField("Auto-Submitted", auto)...)
	h = append(h, message.FormatField("MIME-Version", "1.0")...)
	return h
}

// deliveryStatus is the message/delivery-status content: the
// per-message fields, then a block of fields for each recipient.
func (n *Notifier) deliveryStatus(action string, m *queue.Message, rcpts []queue.Recipient, now time.Time) []byte {
	var b []byte
	field := func(name, value string) { b = append(b, message.FormatField(name, value)...) }
	field("Reporting-MTA", "dns; "+n.cfg.Hostname)
	if m.Helo != "" || m.ClientIP != "" {
		from := "dns; " + m.Helo
		if m.ClientIP != "" {
			from += " (" + m.ClientIP + ")"
		}
		field("Received-From-MTA", from)
	}
	if !m.Arrived.IsZero() {
		field("Arrival-Date", m.Arrived.Format(dateLayout))
	}
	for _, r := range rcpts {
		b = append(b, "\r\n"...)
		if r.Orig != "" {
			field("Original-Recipient", addressType(r.Orig)+";"+r.Orig)
		}
		field("Final-Recipient", addressType(r.To)+";"+r.To)
		field("Action", action)
		field("Status", statusCode(action, r.Reply))
		if host := remoteHost(r.Remote); host != "" {
			field("Remote-MTA", "dns; "+host)
		}
		if reply := lastReply(m, r); reply != "" {
			kind := "smtp"
			if _, _, ok := parseReply(reply); !ok {
				kind = "x-sluice" // our side's error, not a destination's reply
			}
			field("Diagnostic-Code", kind+"; "+oneLine(reply))
		}
		field("Last-Attempt-Date", now.Format(dateLayout))
		if action == "delayed" && n.cfg.MaxAge > 0 && !m.Arrived.IsZero() {
			field("Will-Retry-Until", m.Arrived.Add(n.cfg.MaxAge).Format(dateLayout))
		}
	}
	return b
}

// explanation is the part a person reads.
func (n *Notifier) explanation(action string, m *queue.Message, rcpts []queue.Recipient) string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", n.cfg.Hostname)
	if action == "delayed" {
		b.WriteString("Your message has not been delivered yet to the recipients below.\r\n")
		if n.cfg.MaxAge > 0 && !m.Arrived.IsZero() {
			fmt.Fprintf(&b, "It is still being retried, until %s; you will hear again\r\nonly if it fails. You do not need to send it again.\r\n",
				m.Arrived.Add(n.cfg.MaxAge).UTC().Format(dateLayout))
		}
	} else {
		b.WriteString("Your message could not be delivered to the recipients below.\r\n")
	}
	b.WriteString("Its header is attached, so that you can tell which message it was.\r\n")
	for _, r := range rcpts {
		b.WriteString("\r\n<" + r.Orig + ">")
		if r.To != r.Orig && r.Orig != "" {
			b.WriteString(" (forwarded to <" + r.To + ">)")
		}
		b.WriteString(":\r\n    ")
		reply := oneLine(lastReply(m, r))
		switch {
		case action == "delayed":
			b.WriteString("the last attempt failed: " + orNone(reply))
		case !permanent(r.Reply):
			fmt.Fprintf(&b, "not delivered within %s; the last attempt failed: %s", days(n.cfg.MaxAge), orNone(reply))
		case r.Remote != "":
			b.WriteString(r.Remote + " said: " + reply)
		default:
			b.WriteString(reply)
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

// ownerNotice is the short notice to r's destination mailbox that m did
// not reach it.
func (n *Notifier) ownerNotice(m *queue.Message, r queue.Recipient) *built {
	orig := r.Orig
	if orig == "" {
		orig = r.To
	}
	sender := m.Sender
	if sender == "" {
		sender = "<>"
	}
	reply := oneLine(lastReply(m, r))
	if !permanent(r.Reply) {
		reply = fmt.Sprintf("not delivered within %s; the last attempt failed: %s", days(n.cfg.MaxAge), orNone(reply))
	}
	text := fmt.Sprintf("Mail from %s to %s could not be delivered: %s\r\n\r\n"+
		"This is a notice from the mail system at %s, which forwards %s to you.\r\n"+
		"The message is not kept. Its sender %s.\r\n",
		sender, orig, reply, n.cfg.Hostname, orig, senderTold(m))
	h := n.header(r.To, "Undelivered mail for "+orig, "auto-generated", n.cfg.Now())
	h = append(h, message.FormatField("Content-Type", textType(text))...)
	h = append(h, message.FormatField("Content-Transfer-Encoding", encoding(text))...)
	return &built{header: h, body: []byte(text), to: r.To, utf8: !ascii(string(h)) || !ascii(text)}
}

// senderTold says whether the sender got a DSN, as far as the rules go
// (the rate limit may still have held it back).
func senderTold(m *queue.Message) string {
	if m.Sender == "" || !m.MayBounce {
		return "was not told: it is the null sender or could not be authenticated"
	}
	return "was sent a delivery status notification"
}

// remoteHost is the host name of a Remote ("mx.dest.example" of
// "mx.dest.example[192.0.2.1]:25"), as Remote-MTA's dns type wants it.
func remoteHost(remote string) string {
	host, _, _ := strings.Cut(remote, "[")
	host, _, _ = strings.Cut(host, ":")
	return strings.TrimSpace(host)
}

// lastReply is what the destination last said about r: its Reply, or,
// when that is the queue's own word (an expiry), the message's last
// error, if that is a reply.
func lastReply(m *queue.Message, r queue.Recipient) string {
	if _, _, ok := parseReply(r.Reply); ok || m.LastError == "" {
		return r.Reply
	}
	if _, _, ok := parseReply(m.LastError); ok {
		return m.LastError
	}
	return r.Reply
}

// statusCode is a recipient's Status: the enhanced code of a 5xx reply
// (a refusal); 5.4.7 for one that expired; for a delay, the enhanced
// code of a 4xx reply, else 4.4.7.
func statusCode(action, reply string) string {
	code, enhanced, ok := parseReply(reply)
	if action == "delayed" {
		if ok && code[0] == '4' && enhanced != "" {
			return enhanced
		}
		return "4.4.7"
	}
	if !ok || code[0] != '5' {
		return "5.4.7" // delivery time expired
	}
	if enhanced == "" {
		return "5.0.0"
	}
	return enhanced
}

// permanent says whether reply is a refusal (5xx); a failed recipient
// whose last reply is not expired.
func permanent(reply string) bool {
	code, _, ok := parseReply(reply)
	return ok && code[0] == '5'
}

// parseReply splits an SMTP reply "550 5.1.1 text" into its code and
// enhanced code (RFC 3463; "" if it has none); ok is false if reply is
// not an SMTP reply.
func parseReply(reply string) (code, enhanced string, ok bool) {
	if len(reply) < 3 || reply[0] < '2' || reply[0] > '5' || !digits(reply[1:3]) ||
		(len(reply) > 3 && reply[3] != ' ' && reply[3] != '-') {
		return "", "", false
	}
	code = reply[:3]
	rest := strings.TrimLeft(reply[3:], " -")
	word, _, _ := strings.Cut(rest, " ")
	parts := strings.Split(word, ".")
	if len(parts) == 3 && len(parts[0]) == 1 && parts[0][0] == code[0] &&
		digits(parts[1]) && digits(parts[2]) && len(parts[1]) <= 3 && len(parts[2]) <= 3 {
		enhanced = word
	}
	return code, enhanced, true
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// addressType is the address type of a DSN field: rfc822, or utf-8 for
// an address that is not ASCII (RFC 6533 §3).
func addressType(addr string) string {
	if ascii(addr) {
		return "rfc822"
	}
	return "utf-8"
}

// bounded cuts header to at most max bytes, at a field boundary.
func bounded(header []byte, max int) []byte {
	if len(header) <= max {
		return header
	}
	var out []byte
	for _, f := range message.Fields(header) {
		if len(out)+len(f.Raw) > max {
			break
		}
		out = append(out, f.Raw...)
	}
	return out
}

func textType(text string) string {
	if ascii(text) {
		return "text/plain; charset=us-ascii"
	}
	return "text/plain; charset=utf-8"
}

func encoding(content string) string {
	if ascii(content) {
		return "7bit"
	}
	return "8bit"
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// oneLine makes a reply fit on one line of a field or text.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func orNone(s string) string {
	if s == "" {
		return "(no reply)"
	}
	return s
}

// days says a duration as people count a queue's life.
func days(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		if d == 24*time.Hour {
			return "1 day"
		}
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d > 0:
		return d.String()
	}
	return "the queue's time"
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
