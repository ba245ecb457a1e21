// Package message handles the parts of an RFC 5322 message the gateway
// touches: line endings, the header block and its fields. It never
// re-encodes what it does not change, so that DKIM signatures made
// before Sluice still verify after it.
package message

import (
	"bytes"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/address"
)

// NormalizeLineEndings turns every bare LF and every bare CR into CRLF,
// returning msg itself when there is none. A message is signed and
// relayed with CRLF line endings only, so that what we sign is what the
// destination receives, and so that no next hop that ends lines at a bare
// LF or a bare CR can find the end of the message early in it (SMTP
// smuggling: <LF>.<LF>, <CR>.<CR> and the like).
func NormalizeLineEndings(msg []byte) []byte {
	bare := BareLineEndings(msg)
	if bare == 0 {
		return msg
	}
	out := make([]byte, 0, len(msg)+bare)
	for i, c := range msg {
		switch {
		case c == '\r' && (i+1 == len(msg) || msg[i+1] != '\n'):
			out = append(out, '\r', '\n')
		case c == '\n' && (i == 0 || msg[i-1] != '\r'):
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// BareLineEndings counts the CRs not followed by an LF and the LFs not
// preceded by a CR.
func BareLineEndings(msg []byte) int {
	bareLF, crlf := 0, 0
	for i := 0; ; {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			break
		}
		if i+j > 0 && msg[i+j-1] == '\r' {
			crlf++
		} else {
			bareLF++
		}
		i += j + 1
	}
	// Each CRLF has its own CR; any other CR is bare.
	return bareLF + bytes.Count(msg, []byte("\r")) - crlf
}

// Split returns the header block (each field ending in CRLF, without the
// empty line) and the body (after the empty line). A message with no
// empty line is all header.
func Split(msg []byte) (header, body []byte) {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return nil, msg[2:]
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2], msg[i+4:]
	}
	return msg, nil
}

// Field is one header field as it appears, continuation lines included.
type Field struct {
	Name string // as written; compare with strings.EqualFold
	Raw  []byte // the whole field, ending in CRLF
}

// Value is what follows the field's colon, unfolded and trimmed.
func (f Field) Value() string {
	_, v, _ := strings.Cut(string(f.Raw), ":")
	return strings.TrimSpace(strings.ReplaceAll(v, "\r\n", ""))
}

// Fields splits a header block into its fields. Lines that are neither a
// field nor a continuation are kept as fields with an empty name, so that
// joining Raw gives back the header block exactly.
func Fields(header []byte) []Field {
	var fields []Field
	for len(header) > 0 {
		end := lineEnd(header)
		for end < len(header) && (header[end] == ' ' || header[end] == '\t') {
			end += lineEnd(header[end:])
		}
		raw := header[:end]
		name := ""
		if i := bytes.IndexByte(raw, ':'); i > 0 {
			name = strings.TrimRight(string(raw[:i]), " \t")
		}
		fields = append(fields, Field{Name: name, Raw: raw})
		header = header[end:]
	}
	return fields
}

func lineEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n")); i >= 0 {
		return i + 2
	}
	return len(b)
}

// Count returns how many fields of the header block have the given name.
func Count(header []byte, name string) int {
	n := 0
	for _, f := range Fields(header) {
		if strings.EqualFold(f.Name, name) {
			n++
		}
	}
	return n
}

// Remove returns the header block without any field with one of names.
func Remove(header []byte, names []string) []byte {
	if len(names) == 0 {
		return header
	}
	var out []byte
	for _, f := range Fields(header) {
		drop := false
		for _, n := range names {
			if strings.EqualFold(f.Name, n) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, f.Raw...)
		}
	}
	return out
}

// FormatField renders "Name: value\r\n", folding at spaces so that lines
// stay under 78 characters where the value allows (RFC 5322 §2.1.1), and
// replacing with a space any CR or LF in the value, which could otherwise
// inject fields, and any other control character but tab (a NUL, say, in
// the EHLO name a Received field quotes), which RFC 5322 §3.2.5 does not
// let a field hold and which a destination may refuse the message for.
func FormatField(name, value string) []byte {
	value = strings.Map(func(r rune) rune {
		if r < ' ' && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, value)
	var b []byte
	b = append(b, name...)
	b = append(b, ':')
	lineLen := len(b)
	for i, word := range strings.Split(value, " ") {
		// Never fold before a word of whitespace only (a run of spaces, a
		// tab): the line would hold nothing else, and some parsers take a
		// line of whitespace for the end of the header.
		if i > 0 && lineLen+1+len(word) > 78 && lineLen > 1 && strings.Trim(word, " \t") != "" {
			b = append(b, "\r\n\t"...)
			lineLen = 1
		} else {
			b = append(b, ' ')
			lineLen++
		}
		b = append(b, word...)
		lineLen += len(word)
	}
	return append(b, "\r\n"...)
}

// NeedsSMTPUTF8 is the one rule for whether a message can only be sent in
// a transaction with SMTPUTF8 (RFC 6531): when its reverse-path (after
// SRS) or a recipient has a local part that is not ASCII (a domain goes as
// its A-labels instead), or when the client sent it with SMTPUTF8
// (smtputf8) and its header is not ASCII: UTF-8 header fields (RFC 6532).
// The header of a message sent without SMTPUTF8 goes on as it came, 8-bit
// or not, as it always has. The queue records this as queue.Message.UTF8;
// the relay applies the same parts per transaction (address.NeedsSMTPUTF8
// at MAIL and RCPT, HeaderNeedsSMTPUTF8 at DATA).
func NeedsSMTPUTF8(smtputf8 bool, from string, rcpts []string, header []byte) bool {
	if address.NeedsSMTPUTF8(from) {
		return true
	}
	for _, r := range rcpts {
		if address.NeedsSMTPUTF8(r) {
			return true
		}
	}
	return smtputf8 && HeaderNeedsSMTPUTF8(header)
}

// HeaderNeedsSMTPUTF8 reports whether a header block has UTF-8 in it (RFC
// 6532), which only a destination that offers SMTPUTF8 may be sent.
func HeaderNeedsSMTPUTF8(header []byte) bool {
	for _, c := range header {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
