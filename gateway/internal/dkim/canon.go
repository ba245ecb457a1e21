package dkim

import (
	"bytes"
	"encoding/base64"
	"io"
	"slices"

	"github.com/sluice-mail/sluice/gateway/internal/message"
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
			fields = append(fields, headerField{
				name: string(lineName(line)),
				raw:  line,
			})
		}
		rest = rest[end:]
	}
	return fields, nil
}

// fieldsOf returns the fields of a header the gateway parsed once
// (message.ParseHeader and its views), named as splitMessage names them,
// so that the two read a header alike. Each field's name is the
// header's own where they agree, as they do for every well-formed field;
// no field is parsed or copied again.
func fieldsOf(h *message.Header) []headerField {
	src := h.Fields()
	fields := make([]headerField, len(src))
	for i, f := range src {
		fields[i] = headerField{name: f.Name, raw: f.Raw}
		if name := fieldName(f.Raw); string(name) != f.Name {
			fields[i].name = string(name)
		}
	}
	return fields
}

// fieldName is the name splitMessage gives a field: lineName of its
// first line.
func fieldName(raw []byte) []byte {
	if i := bytes.IndexByte(raw, '\n'); i >= 0 {
		raw = raw[:i+1]
	}
	return lineName(raw)
}

// lineName is the name of the field a line starts: what comes before the
// colon (the whole line if it has none), trimmed.
func lineName(line []byte) []byte {
	name, _, _ := bytes.Cut(line, []byte(":"))
	return bytes.TrimSpace(name)
}

func isEmptyLine(line []byte) bool {
	return string(line) == "\r\n" || string(line) == "\n"
}

// selectFields returns the fields that the names of an h= list (lower case)
// pick, in list order, as RFC 6376 §5.4.2 says: each occurrence of a name
// takes the next instance of that field counting from the bottom, and a name
// with no instance left picks nothing. That last rule is what makes
// oversigning work: a field added later fills the empty slot and breaks the
// signature. Field number except (-1 for none) is never picked: a verifier
// passes the signature field it checks, which did not exist when h= was
// written.
//
// Names match in ASCII only, as field names are ASCII (RFC 5322 §3.6.8).
func selectFields(fields []headerField, names []string, except int) []headerField {
	// One pass over the header chains each name's instances, so that
	// picking is a look-up. A scan of the header per name would cost
	// names × fields, and a verifier gets both from the message.
	slot := make(map[string]int, len(names)) // name → index in head
	for _, name := range names {
		if _, ok := slot[name]; !ok {
			slot[name] = len(slot)
		}
	}
	// head[n] is the lowest field of name n not yet picked; next[i] is the
	// field of the same name above field i. -1 ends both.
	head := make([]int, len(slot))
	for n := range head {
		head[n] = -1
	}
	next := make([]int, len(fields))
	var key []byte
	for i, f := range fields {
		key = message.AppendLower(key[:0], f.name)
		if n, ok := slot[string(key)]; ok && i != except {
			next[i], head[n] = head[n], i
		}
	}
	picked := make([]headerField, 0, len(names))
	for _, name := range names {
		n := slot[name]
		if i := head[n]; i >= 0 {
			picked = append(picked, fields[i])
			head[n] = next[i]
		}
	}
	return picked
}

// appendSignedHeaders appends the relaxed canonical form of the fields that
// names (lower case) picks: what a signer signs.
func appendSignedHeaders(dst []byte, fields []headerField, names []string) []byte {
	picked := selectFields(fields, names, -1)
	n := 0
	for _, f := range picked {
		n += len(f.raw) // the relaxed form is no longer
	}
	dst = slices.Grow(dst, n)
	for _, f := range picked {
		dst = appendRelaxedHeader(dst, f.raw)
	}
	return dst
}

// appendCanonHeader appends one header field in the canonical form canon,
// "simple" or "relaxed".
func appendCanonHeader(dst, raw []byte, canon string) []byte {
	if canon == "relaxed" {
		return appendRelaxedHeader(dst, raw)
	}
	return appendSimpleHeader(dst, raw)
}

// appendSimpleHeader appends the "simple" canonical form of a header field
// (RFC 6376 §3.4.1): unchanged, except that a line ending in a bare LF ends
// in CRLF, as on the SMTP wire (and as the signer hashes it).
func appendSimpleHeader(dst, raw []byte) []byte {
	for len(raw) > 0 {
		line, rest, found := bytes.Cut(raw, []byte("\n"))
		raw = rest
		dst = append(dst, bytes.TrimSuffix(line, []byte("\r"))...)
		if found {
			dst = append(dst, "\r\n"...)
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
	if v := bytes.Trim(value, " \t\r\n"); isRelaxed(v) {
		// An unfolded value with single spaces, as most are, stays as it is.
		dst = append(dst, v...)
		return append(dst, "\r\n"...)
	}
	// Words are copied whole; between them, line breaks go (unfolding)
	// and any white space becomes one space.
	space := false
	wrote := false
	for len(value) > 0 {
		n := wordLength(value)
		if n == 0 {
			space = space || value[0] == ' ' || value[0] == '\t'
			value = value[1:]
			continue
		}
		if space && wrote {
			dst = append(dst, ' ')
		}
		dst = append(dst, value[:n]...)
		value = value[n:]
		space, wrote = false, true
	}
	return append(dst, "\r\n"...)
}

// wordLength returns how many bytes at the start of b are neither white
// space nor a line break.
func wordLength(b []byte) int {
	for i, c := range b {
		if c <= ' ' && (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			return i
		}
	}
	return len(b)
}

// isRelaxed reports whether a trimmed header value is already in relaxed
// form: no line breaks, no tabs, no two spaces in a row.
func isRelaxed(v []byte) bool {
	return bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\r') < 0 && bytes.IndexByte(v, '\t') < 0 &&
		!bytes.Contains(v, []byte("  "))
}

// writeCanonBody writes body to w in the canonical form canon, "simple" or
// "relaxed".
func writeCanonBody(w io.Writer, body []byte, canon string) {
	if canon == "relaxed" {
		writeRelaxedBody(w, body)
	} else {
		writeSimpleBody(w, body)
	}
}

// bodyHash returns the base64 SHA-256 of the "relaxed" canonical body
// (RFC 6376 §3.4.4), the bh= value.
func bodyHash(body *Body) string {
	return base64.StdEncoding.EncodeToString(body.Hash("relaxed"))
}

// writeRelaxedBody writes the relaxed canonical form of body to w: whitespace
// at line ends removed, other whitespace runs reduced to one space, empty
// lines at the end dropped, and a final CRLF after the last non-empty line.
// An empty body stays empty. It goes out in chunks of a few KiB, whatever
// the body's size.
func writeRelaxedBody(w io.Writer, body []byte) {
	if n, ok := relaxedAsIs(body); ok {
		// Most bodies (plain text, base64 attachments) need nothing done:
		// hashing them as they are costs no copy and no pass per byte.
		w.Write(body[:n])
		return
	}
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

// writeSimpleBody writes the "simple" canonical form of body to w (RFC 6376
// §3.4.3): unchanged but for CRLF line ends, empty lines at the end
// dropped, and a body that is empty or all empty lines written as one CRLF.
func writeSimpleBody(w io.Writer, body []byte) {
	const chunk = 4096
	buf := make([]byte, 0, chunk+256)
	emptyLines := 0
	wrote := false
	for len(body) > 0 {
		line, rest, _ := bytes.Cut(body, []byte("\n"))
		body = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			// Held back: only written if a non-empty line follows.
			emptyLines++
			continue
		}
		for ; emptyLines > 0; emptyLines-- {
			buf = append(buf, "\r\n"...)
		}
		buf = append(buf, line...)
		buf = append(buf, "\r\n"...)
		wrote = true
		if len(buf) >= chunk {
			w.Write(buf)
			buf = buf[:0]
		}
	}
	if !wrote {
		buf = append(buf, "\r\n"...)
	}
	w.Write(buf)
}

// relaxedAsIs reports whether the relaxed canonical form of body is body
// itself without its empty lines at the end, n bytes long: it is when
// every line ends in CRLF and none has a tab, two spaces in a row or a
// space at its end.
func relaxedAsIs(body []byte) (n int, ok bool) {
	if bytes.IndexByte(body, '\t') >= 0 || bytes.Contains(body, []byte("  ")) || bytes.Contains(body, []byte(" \r\n")) {
		return 0, false
	}
	if bytes.Count(body, []byte("\n")) != bytes.Count(body, []byte("\r\n")) {
		return 0, false // a bare LF becomes CRLF
	}
	n = len(body)
	for n >= 4 && string(body[n-4:n]) == "\r\n\r\n" {
		n -= 2
	}
	if n == 2 && string(body[:2]) == "\r\n" {
		return 0, true // only empty lines: the canonical body is empty
	}
	// A last line without CRLF gets one, and one ending in a space loses it.
	return n, n == 0 || (n >= 2 && string(body[n-2:n]) == "\r\n")
}

// appendCollapsed appends line with each run of spaces and tabs as one space.
func appendCollapsed(dst, line []byte) []byte {
	if bytes.IndexByte(line, '\t') < 0 && !bytes.Contains(line, []byte("  ")) {
		return append(dst, line...)
	}
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
