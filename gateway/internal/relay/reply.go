package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/emersion/go-smtp"
)

// maxReplyDetail keeps generated replies well under the 512-octet reply
// line limit of RFC 5321 §4.5.3.1.5.
const maxReplyDetail = 400

// cleanReply copies a destination's reply for the client: same code, same
// enhanced code, same text, minus what could break the client's parsing.
// An enhanced code of another class than the code ("550 4.1.1") is
// dropped, as parseReply drops it: a client that trusts enhanced codes
// would read a refusal as a deferral or the other way round.
func cleanReply(reply *smtp.SMTPError) *smtp.SMTPError {
	out := parseReply(reply.Code, reply.Message)
	if e := reply.EnhancedCode; e != smtp.EnhancedCodeNotSet && e != smtp.NoEnhancedCode && e[0] == reply.Code/100 {
		out.EnhancedCode = e
	}
	return out
}

// parseReply splits a reply's text (lines joined with "\n") into its
// enhanced code and message. RFC 2034 puts the enhanced code on every line
// and some servers only on the last, so it is taken from the first line
// that has one and removed from all of them. Without one, the code is left
// unset and go-smtp's server sends the generic X.0.0.
func parseReply(code int, text string) *smtp.SMTPError {
	out := &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCodeNotSet}
	lines := strings.Split(sanitize(text), "\n")
	for i, line := range lines {
		first, rest, _ := strings.Cut(line, " ")
		enh, ok := parseEnhancedCode(first, code)
		if !ok {
			continue
		}
		if out.EnhancedCode == smtp.EnhancedCodeNotSet {
			out.EnhancedCode = enh
		}
		lines[i] = rest
	}
	out.Message = strings.Join(lines, "\n")
	return out
}

// parseEnhancedCode reads "class.subject.detail" (RFC 3463) whose class
// matches the reply code's first digit.
func parseEnhancedCode(s string, code int) (smtp.EnhancedCode, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return smtp.EnhancedCode{}, false
	}
	var enh smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || len(p) > 3 || p[0] == '+' {
			return smtp.EnhancedCode{}, false
		}
		enh[i] = n
	}
	if enh[0] != code/100 {
		return smtp.EnhancedCode{}, false
	}
	return enh, true
}

// sanitize removes control characters other than the line separator, so a
// destination's text cannot inject lines or terminal codes into our reply.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if (r < ' ' && r != '\n') || r == 0x7f {
			return -1
		}
		return r
	}, strings.Trim(s, "\n"))
}

// describe says in a few words why an exchange with a destination failed.
func describe(err error) string {
	if reply, ok := errors.AsType[*smtp.SMTPError](err); ok {
		r := cleanReply(reply)
		text := strings.ReplaceAll(r.Message, "\n", " ")
		if r.EnhancedCode == smtp.EnhancedCodeNotSet {
			return fmt.Sprintf("%d %s", r.Code, text)
		}
		e := r.EnhancedCode
		return fmt.Sprintf("%d %d.%d.%d %s", r.Code, e[0], e[1], e[2], text)
	}
	if errno, ok := errors.AsType[syscall.Errno](err); ok {
		return errno.Error() // "connection refused", without the Go wrapping
	}
	if netErr, ok := errors.AsType[net.Error](err); ok && netErr.Timeout() {
		return "timed out"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed by the destination"
	}
	return sanitize(strings.ReplaceAll(err.Error(), "\n", " "))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// ReplyText is a reply as a client reads it: "550 5.1.1 text", or
// "550 text" without an enhanced code; "" for nil. The session's log and
// the queue's state both write replies so.
func ReplyText(e *smtp.SMTPError) string {
	if e == nil {
		return ""
	}
	b := make([]byte, 0, 16+len(e.Message))
	b = strconv.AppendInt(b, int64(e.Code), 10)
	if e.EnhancedCode != smtp.NoEnhancedCode && e.EnhancedCode != smtp.EnhancedCodeNotSet {
		for i, n := range e.EnhancedCode {
			if i == 0 {
				b = append(b, ' ')
			} else {
				b = append(b, '.')
			}
			b = strconv.AppendInt(b, int64(n), 10)
		}
	}
	b = append(b, ' ')
	b = append(b, e.Message...)
	return string(b)
}
