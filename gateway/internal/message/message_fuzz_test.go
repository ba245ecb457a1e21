package message

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// lineBreaks maps every line ending (CRLF, bare CR, bare LF) to LF, to
// compare texts line by line whatever their endings.
func lineBreaks(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}

// FuzzHeader runs arbitrary messages through what deliver does to them:
// normalise line endings, split header from body, split the header into
// fields, count and remove fields. What comes out must be the message
// again, with CRLF line endings only; and plugins, who see the header
// through abi.ParseHeader, must see the same fields the gateway counts
// and removes (Received for loops, a plugin's removals, forged
// Authentication-Results).
func FuzzHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		n := NormalizeLineEndings(msg)
		if !bytes.Equal(lineBreaks(n), lineBreaks(msg)) {
			t.Fatalf("NormalizeLineEndings(%q) = %q: lines changed", msg, n)
		}
		for i, c := range n {
			if c == '\r' && (i+1 == len(n) || n[i+1] != '\n') || c == '\n' && (i == 0 || n[i-1] != '\r') {
				t.Fatalf("NormalizeLineEndings(%q) = %q: bare line ending at %d", msg, n, i)
			}
		}

		header, body := Split(n)
		switch {
		case bytes.HasPrefix(n, []byte("\r\n")):
			if len(header) != 0 || !bytes.Equal(body, n[2:]) {
				t.Fatalf("Split(%q) = %q, %q: want no header", n, header, body)
			}
		case body == nil && !bytes.Contains(n, []byte("\r\n\r\n")):
			if !bytes.Equal(header, n) {
				t.Fatalf("Split(%q) = %q, %q: want all header", n, header, body)
			}
		default:
			if !bytes.Equal(slices.Concat(header, []byte("\r\n"), body), n) || !bytes.HasSuffix(header, []byte("\r\n")) ||
				bytes.Contains(header, []byte("\r\n\r\n")) {
				t.Fatalf("Split(%q) = %q, %q", n, header, body)
			}
		}

		fields := Fields(header)
		var joined []byte
		var names []string
		for i, fl := range fields {
			joined = append(joined, fl.Raw...)
			if i > 0 && (fl.Raw[0] == ' ' || fl.Raw[0] == '\t') {
				t.Fatalf("field %d of %q starts with whitespace: %q", i, header, fl.Raw)
			}
			if colon := bytes.IndexByte(fl.Raw, ':'); colon > 0 {
				names = append(names, fl.Name)
			} else if fl.Name != "" {
				t.Fatalf("field %q without a colon has name %q", fl.Raw, fl.Name)
			}
		}
		if !bytes.Equal(joined, header) {
			t.Fatalf("Fields(%q) joined = %q", header, joined)
		}
		// The header parsed once has the same fields; with fields put on
		// top, those of the blocks joined.
		sameFields := func(a, b Field) bool { return a.Name == b.Name && bytes.Equal(a.Raw, b.Raw) }
		parsed := ParseHeader(header)
		if !slices.EqualFunc(parsed.Fields(), fields, sameFields) {
			t.Fatalf("ParseHeader(%q) = %q, Fields: %q", header, parsed.Fields(), fields)
		}
		ours := []byte("Received: by us\r\n\tfolded\r\nX-Ours: 1\r\n")
		if on := parsed.Prepend(ours); !slices.EqualFunc(on.Fields(), Fields(slices.Concat(ours, header)), sameFields) {
			t.Fatalf("ParseHeader(%q).Prepend(%q) = %q, Fields of both: %q", header, ours, on.Fields(), Fields(slices.Concat(ours, header)))
		}

		// The plugins' view of the same header.
		var abiNames []string
		for _, h := range abi.ParseHeader(header) {
			abiNames = append(abiNames, h.Name)
		}
		if !slices.Equal(names, abiNames) {
			t.Fatalf("header %q: gateway sees fields %q, plugins see %q", header, names, abiNames)
		}

		for _, name := range names {
			if name == "" {
				continue // " : x" is no field to count
			}
			want := 0
			for _, other := range names {
				if strings.EqualFold(other, name) {
					want++
				}
			}
			if got := Count(header, name); got != want {
				t.Fatalf("Count(%q, %q) = %d, want %d", header, name, got, want)
			}
			rest := Remove(header, []string{name})
			if Count(rest, name) != 0 || len(Fields(rest)) != len(fields)-want {
				t.Fatalf("Remove(%q, %q) = %q", header, name, rest)
			}
			// The parsed header matches names in ASCII case only.
			ascii := 0
			for _, other := range names {
				if asciiEqualFold(other, name) {
					ascii++
				}
			}
			if got := parsed.Count(name); got != ascii {
				t.Fatalf("ParseHeader(%q).Count(%q) = %d, want %d", header, name, got, ascii)
			}
			if f, ok := parsed.Get(name, ascii-1); !ok || !asciiEqualFold(f.Name, name) {
				t.Fatalf("ParseHeader(%q).Get(%q, %d) = %q, %v", header, name, ascii-1, f.Raw, ok)
			}
			if view := parsed.Without(name); !bytes.Equal(view.Bytes(), rest) || view.Count(name) != 0 {
				t.Fatalf("ParseHeader(%q).Without(%q) = %q, Remove: %q", header, name, view.Bytes(), rest)
			}
		}
	})
}

// asciiEqualFold is strings.EqualFold for ASCII letters only.
func asciiEqualFold(a, b string) bool {
	return string(AppendLower(nil, a)) == string(AppendLower(nil, b))
}

// FuzzFormatField renders arbitrary values as header fields. The result
// must be exactly one field of that name, end in CRLF, have no bare CR
// or LF (which would inject fields), no line of whitespace only (which
// some parsers take for the end of the header), and no line over 78
// characters but where a single word (with the whitespace after it) is
// that long; unfolded, it must hold the value's words.
func FuzzFormatField(f *testing.F) {
	f.Add("Subject", "Hello")
	f.Add("X-Sluice-Quarantine", "dmarc: example.org's DMARC policy is quarantine and neither SPF nor DKIM aligned")
	f.Add("X-Long", strings.Repeat("word ", 40))
	f.Add("X-Inject", "a\r\nBcc: victim@example.org")
	f.Add("Received", "from c\x00d\x1b[0m\x7f (client [192.0.2.1])")
	f.Add("X-Spaces", strings.Repeat("x", 90)+"   ")
	f.Fuzz(func(t *testing.T, name, value string) {
		if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == ':' }) {
			return // callers pass field names, never text
		}
		out := FormatField(name, value)
		fields := Fields(out)
		if len(fields) != 1 || fields[0].Name != name || !bytes.Equal(fields[0].Raw, out) || !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("FormatField(%q, %q) = %q: not one field", name, value, out)
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
		for i, line := range lines {
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("FormatField(%q, %q) = %q: bare CR or LF", name, value, out)
			}
			if strings.ContainsFunc(line, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				t.Fatalf("FormatField(%q, %q) = %q: a control character", name, value, out)
			}
			if i > 0 && strings.Trim(line, " \t") == "" {
				t.Fatalf("FormatField(%q, %q) = %q: line %d is whitespace only", name, value, out, i)
			}
			text := line
			if i == 0 {
				text = strings.TrimPrefix(line, name+":")
			}
			words := 0
			for _, w := range strings.Split(text, " ") {
				if strings.Trim(w, " \t") != "" {
					words++
				}
			}
			if len(strings.TrimRight(line, " \t")) > 78 && words > 1 {
				t.Fatalf("FormatField(%q, %q) = %q: line %d is %d long and could fold", name, value, out, i, len(line))
			}
		}
		got := abi.ParseHeader(out)
		// Bytes that are not UTF-8 come out as U+FFFD, as strings.Map
		// writes them.
		want := strings.Fields(strings.Map(func(r rune) rune {
			if r < ' ' && r != '\t' || r == 0x7f {
				return ' '
			}
			return r
		}, value))
		if len(got) != 1 || !slices.Equal(strings.Fields(got[0].Value), want) {
			t.Fatalf("FormatField(%q, %q) = %q: unfolds to %q, want the words %q", name, value, out, got, want)
		}
	})
}
