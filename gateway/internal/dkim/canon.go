package dkim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"strings"
)

// headerField is one header field exactly as it appears in the message,
// folding and final line break included: DKIM hashes the original bytes.
type headerField struct {
	name string // the field name, without surrounding whitespace
	raw  []byte
}

// splitMessage returns the header fields and the body of msg. The header ends
// at the first empty line; a message without one is all header. A bare LF
// ends a line like CRLF does, because that is how it travels over SMTP.
func splitMessage(msg []byte) ([]headerField, []byte) {
	var fields []headerField
	rest := msg
	for len(rest) > 0 {
		end := bytes.IndexByte(rest, '\n') + 1
		if end == 0 {
			end = len(rest)
		}
		line := rest[:end]
		if isEmptyLine(line) {
			return fields, rest[end:]
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			// A continuation line. raw is a window on msg, so the
			// previous field can grow over the line that follows it.
			last := &fields[len(fields)-1]
			last.raw = last.raw[:len(last.raw)+len(line)]
		} else {
			name, _, _ := bytes.Cut(line, []byte(":"))
			fields = append(fields, headerField{
				name: string(bytes.TrimSpace(name)),
				raw:  line,
			})
		}
		rest = rest[end:]
	}
	return fields, nil
}

func isEmptyLine(line []byte) bool {
	return string(line) == "\r\n" || string(line) == "\n"
}

// appendSignedHeaders appends the relaxed canonical form of the fields named
// in names (lower case), chosen as RFC 6376 §5.4.2 says: each occurrence of a
// name takes the next instance of that field counting from the bottom, and a
// name with no instance left adds nothing. That last rule is what makes
// oversigning work: a field added later fills the empty slot and breaks the
// signature.
func appendSignedHeaders(dst []byte, fields []headerField, names []string) []byte {
	taken := make(map[string]int, len(names))
	for _, name := range names {
		skip := taken[name]
		taken[name]++
		for i := len(fields) - 1; i >= 0; i-- {
			if !strings.EqualFold(fields[i].name, name) {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			dst = appendRelaxedHeader(dst, fields[i].raw)
			break
		}
	}
	return dst
}

// appendRelaxedHeader appends the "relaxed" canonical form of one header
// field (RFC 6376 §3.4.2): lower-case name, no whitespace around the colon,
// unfolded, every whitespace run reduced to one space, none at the end.
func appendRelaxedHeader(dst, raw []byte) []byte {
	name, value, _ := bytes.Cut(raw, []byte(":"))
	for _, c := range bytes.TrimSpace(name) {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ':')
	space := false
	wrote := false
	for _, c := range value {
		switch c {
		case '\r', '\n':
			// Unfolding removes the line breaks; the whitespace after
			// them stays and is collapsed with the rest.
		case ' ', '\t':
			space = true
		default:
			if space && wrote {
				dst = append(dst, ' ')
			}
			space = false
			wrote = true
			dst = append(dst, c)
		}
	}
	return append(dst, "\r\n"...)
}

// bodyHash returns the base64 SHA-256 of the "relaxed" canonical body
// (RFC 6376 §3.4.4), the bh= value.
func bodyHash(body []byte) string {
	h := sha256.New()
	writeRelaxedBody(h, body)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// writeRelaxedBody writes the relaxed canonical form of body to w: whitespace
// at line ends removed, other whitespace runs reduced to one space, empty
// lines at the end dropped, and a final CRLF after the last non-empty line.
// An empty body stays empty. It goes out in chunks of a few KiB, whatever
// the body's size.
func writeRelaxedBody(w io.Writer, body []byte) {
	const chunk = 4096
	buf := make([]byte, 0, chunk+256)
	emptyLines := 0
	for len(body) > 0 {
		line, rest, _ := bytes.Cut(body, []byte("\n"))
		body = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		line = bytes.TrimRight(line, " \t")
		if len(line) == 0 {
			// Held back: only written if a non-empty line follows.
			emptyLines++
			continue
		}
		for ; emptyLines > 0; emptyLines-- {
			buf = append(buf, "\r\n"...)
		}
		buf = appendCollapsed(buf, line)
		buf = append(buf, "\r\n"...)
		if len(buf) >= chunk {
			w.Write(buf)
			buf = buf[:0]
		}
	}
	w.Write(buf)
}

// appendCollapsed appends line with each run of spaces and tabs as one space.
func appendCollapsed(dst, line []byte) []byte {
	space := false
	for _, c := range line {
		if c == ' ' || c == '\t' {
			space = true
			continue
		}
		if space {
			dst = append(dst, ' ')
			space = false
		}
		dst = append(dst, c)
	}
	return dst
}
