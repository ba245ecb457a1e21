package arc

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// tags is a parsed tag list (RFC 6376 §3.2): tag name to value, the value
// with surrounding whitespace removed and inner whitespace kept.
type tags map[string]string

// parseTags parses a DKIM-style tag list. Names are case-sensitive; an empty
// tag (";;"), a tag without "=", a name that does not start with a letter and
// a repeated name all make the whole list invalid. A final ";" is allowed.
func parseTags(list string) (tags, error) {
	t := tags{}
	parts := strings.Split(list, ";")
	for i, part := range parts {
		part = trimFWS(part)
		if part == "" {
			if i == len(parts)-1 {
				break // the optional final ";"
			}
			return nil, errors.New("empty tag")
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("tag %.20q has no '='", part)
		}
		name, value = trimFWS(name), trimFWS(value)
		if !isTagName(name) {
			return nil, fmt.Errorf("invalid tag name %.20q", name)
		}
		if _, dup := t[name]; dup {
			return nil, fmt.Errorf("tag %s= appears twice", name)
		}
		t[name] = value
	}
	return t, nil
}

// tag-name = ALPHA *ALNUMPUNC (RFC 6376 §3.2).
func isTagName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for _, c := range []byte(s) {
		if !isAlpha(c) && !('0' <= c && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isFWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimFWS(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r < 0x80 && isFWS(byte(r)) })
}

// removeFWS returns s without any whitespace: base64 values (b=, bh=, p=)
// may be folded anywhere.
func removeFWS(s string) string {
	if !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < 0x80 && isFWS(byte(r)) {
			return -1
		}
		return r
	}, s)
}

// decodeBase64 decodes a possibly folded base64 tag value; empty is an error.
func decodeBase64(s string) ([]byte, error) {
	s = removeFWS(s)
	if s == "" {
		return nil, errors.New("empty")
	}
	return base64.StdEncoding.DecodeString(s)
}

// parseInstance parses an i= value: 1*2DIGIT, 1 to 99. Values above 50 are
// well formed and make the chain fail later, as too long.
func parseInstance(s string) (int, error) {
	if len(s) == 0 || len(s) > 2 || !isDigits(s) {
		return 0, fmt.Errorf("i=%.20q is not an instance number", s)
	}
	n, _ := strconv.Atoi(s)
	if n == 0 {
		return 0, errors.New("i=0 is not an instance number")
	}
	return n, nil
}

// parseTime parses a t= or x= value: up to 12 digits (RFC 6376 §3.5).
func parseTime(name, s string) (int64, error) {
	if len(s) == 0 || len(s) > 12 || !isDigits(s) {
		return 0, fmt.Errorf("%s=%.20q is not a time", name, s)
	}
	return strconv.ParseInt(s, 10, 64)
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// fieldValue returns what follows the colon of a raw header field.
func fieldValue(raw []byte) string {
	_, v, _ := bytes.Cut(raw, []byte(":"))
	return string(v)
}

// withoutSignature returns the raw field with the value of its b= tag
// removed, whitespace around it included, as signing saw it (RFC 6376
// §3.7). The field's tag list must have parsed.
func withoutSignature(raw []byte) []byte {
	colon := bytes.IndexByte(raw, ':')
	out := make([]byte, 0, len(raw))
	out = append(out, raw[:colon+1]...)
	rest := raw[colon+1:]
	for len(rest) > 0 {
		part := rest
		if end := bytes.IndexByte(rest, ';'); end >= 0 {
			part = rest[:end+1]
		}
		rest = rest[len(part):]
		name, _, ok := bytes.Cut(part, []byte("="))
		if ok && string(bytes.TrimFunc(name, func(r rune) bool { return r < 0x80 && isFWS(byte(r)) })) == "b" {
			eq := bytes.IndexByte(part, '=')
			out = append(out, part[:eq+1]...)
			if part[len(part)-1] == ';' {
				out = append(out, ';')
			}
			continue
		}
		out = append(out, part...)
	}
	return out
}
