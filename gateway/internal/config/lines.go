package config

import (
	"strconv"
	"strings"
)

// lineIndex maps each key of a TOML document to the line that defines it.
//
// BurntSushi/toml knows key positions but does not export them, and we need
// them to say "file:line: what is wrong" for unknown keys and for values
// that are well-typed but wrong. The index only has to find where keys are
// defined, so it follows table headers, dotted keys and the places where
// text cannot hold a key (strings, multi-line arrays, inline tables); the
// real parsing is still done by the toml package.
//
// Paths are dotted, with array-of-tables entries numbered: "plugin.0.path".
type lineIndex map[string]int

func indexLines(src string) lineIndex {
	idx := lineIndex{}
	counts := map[string]int{} // entries seen per array-of-tables path
	var table string
	s := &tomlScanner{src: src, line: 1}
	for s.skipSpaceAndComments(); !s.eof(); s.skipSpaceAndComments() {
		line := s.line
		switch {
		case strings.HasPrefix(s.rest(), "[["):
			s.pos += 2
			path := joinPath(numbered(s.keyPath(), counts))
			n := counts[path]
			counts[path] = n + 1
			table = path + "." + strconv.Itoa(n)
			idx.set(table, line)
			s.skipLine()
		case strings.HasPrefix(s.rest(), "["):
			s.pos++
			table = joinPath(numbered(s.keyPath(), counts))
			idx.set(table, line)
			s.skipLine()
		default:
			key := s.keyPath()
			if len(key) == 0 {
				s.skipLine()
				continue
			}
			full := key
			if table != "" {
				full = append([]string{table}, key...)
			}
			idx.set(joinPath(full), line)
			s.skipValue()
		}
	}
	return idx
}

// numbered turns a header path like plugin.config into plugin.N.config,
// where N is the current entry of each array of tables along the path.
func numbered(path []string, counts map[string]int) []string {
	var out []string
	for i, k := range path {
		out = append(out, k)
		prefix := joinPath(out)
		if n, ok := counts[prefix]; ok && i < len(path)-1 {
			out = append(out, strconv.Itoa(n-1))
		}
	}
	return out
}

func joinPath(p []string) string { return strings.Join(p, ".") }

func (idx lineIndex) set(path string, line int) {
	if _, ok := idx[path]; !ok {
		idx[path] = line
	}
}

// lookup finds the line of path, or of its nearest ancestor that has one,
// so that a problem inside an inline table still points at its key.
func (idx lineIndex) lookup(path string) int {
	for {
		if l, ok := idx[path]; ok {
			return l
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return 1
		}
		path = path[:i]
	}
}

// lookupLoose is lookup for a path that may leave out the entry numbers of
// arrays of tables, as plugins may report keys of their config: the first
// entry it fits. The SDK numbers the entry of a value of the wrong type
// ("rule.3.code", found by lookup); it leaves the number out for a key
// that is not a setting ("rule.actoin"), which only the entries holding
// the typo have, so that the first of them is the one to fix. Plugins
// built with an older SDK leave it out for both.
func (idx lineIndex) lookupLoose(path string) int {
	want := strings.Split(path, ".")
	for ; len(want) > 0; want = want[:len(want)-1] {
		if l, ok := idx[joinPath(want)]; ok {
			return l
		}
		best := 0
		for p, line := range idx {
			if (best == 0 || line < best) && fitsLoosely(want, strings.Split(p, ".")) {
				best = line
			}
		}
		if best > 0 {
			return best
		}
	}
	return 1
}

// fitsLoosely reports whether the indexed path got is want with entry
// numbers added.
func fitsLoosely(want, got []string) bool {
	i := 0
	for _, g := range got {
		switch {
		case i < len(want) && g == want[i]:
			i++
		case !isNumber(g):
			return false
		}
	}
	return i == len(want)
}

// linesOfUnnumbered returns the lines of every entry matching a path given
// without array indexes (as toml's Undecoded reports them).
func (idx lineIndex) linesOfUnnumbered(key []string) []int {
	var lines []int
	for path, line := range idx {
		parts := strings.Split(path, ".")
		var stripped []string
		for _, p := range parts {
			if _, err := strconv.Atoi(p); err == nil {
				continue
			}
			stripped = append(stripped, p)
		}
		if joinPath(stripped) == joinPath(key) && !isNumber(parts[len(parts)-1]) {
			lines = append(lines, line)
		}
	}
	return lines
}

// lastLineOf returns the line of the last entry at or before line limit
// of a path given without array indexes, or of its nearest ancestor that
// has one (a key inside an inline table is not indexed); 0 if none.
func (idx lineIndex) lastLineOf(key []string, limit int) int {
	for ; len(key) > 0; key = key[:len(key)-1] {
		best := 0
		for _, line := range idx.linesOfUnnumbered(key) {
			if line <= limit && line > best {
				best = line
			}
		}
		if best > 0 {
			return best
		}
	}
	return 0
}

func isNumber(s string) bool { _, err := strconv.Atoi(s); return err == nil }

type tomlScanner struct {
	src  string
	pos  int
	line int
}

func (s *tomlScanner) eof() bool    { return s.pos >= len(s.src) }
func (s *tomlScanner) rest() string { return s.src[s.pos:] }

func (s *tomlScanner) advance() byte {
	c := s.src[s.pos]
	s.pos++
	if c == '\n' {
		s.line++
	}
	return c
}

func (s *tomlScanner) skipSpaceAndComments() {
	for !s.eof() {
		switch c := s.src[s.pos]; c {
		case ' ', '\t', '\r', '\n':
			s.advance()
		case '#':
			s.skipLine()
		default:
			return
		}
	}
}

func (s *tomlScanner) skipLine() {
	for !s.eof() && s.advance() != '\n' {
	}
}

// keyPath reads a (possibly dotted, possibly quoted) key and the '=' or ']'
// after it.
func (s *tomlScanner) keyPath() []string {
	var path []string
	for !s.eof() {
		for !s.eof() && (s.src[s.pos] == ' ' || s.src[s.pos] == '\t') {
			s.pos++
		}
		if s.eof() {
			break
		}
		switch c := s.src[s.pos]; {
		case c == '"' || c == '\'':
			path = append(path, s.quoted(c))
		case isBare(c):
			start := s.pos
			for !s.eof() && isBare(s.src[s.pos]) {
				s.pos++
			}
			path = append(path, s.src[start:s.pos])
		default:
			return path
		}
		for !s.eof() && (s.src[s.pos] == ' ' || s.src[s.pos] == '\t') {
			s.pos++
		}
		if s.eof() || s.src[s.pos] != '.' {
			if !s.eof() && s.src[s.pos] == '=' {
				s.pos++
			}
			return path
		}
		s.pos++ // the dot
	}
	return path
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// quoted reads a one-line quoted key and returns its (unescaped enough) text.
func (s *tomlScanner) quoted(q byte) string {
	s.pos++
	var b strings.Builder
	for !s.eof() && s.src[s.pos] != q && s.src[s.pos] != '\n' {
		if q == '"' && s.src[s.pos] == '\\' && s.pos+1 < len(s.src) {
			s.pos++
		}
		b.WriteByte(s.src[s.pos])
		s.pos++
	}
	if !s.eof() && s.src[s.pos] == q {
		s.pos++
	}
	return b.String()
}

// skipValue skips a value, which may span lines inside brackets, braces or
// multi-line strings, and the rest of its line.
func (s *tomlScanner) skipValue() {
	depth := 0
	for !s.eof() {
		switch {
		case strings.HasPrefix(s.rest(), `"""`), strings.HasPrefix(s.rest(), `'''`):
			delim := s.rest()[:3]
			s.pos += 3
			for !s.eof() && !strings.HasPrefix(s.rest(), delim) {
				if delim == `"""` && s.src[s.pos] == '\\' && s.pos+1 < len(s.src) {
					s.advance()
				}
				s.advance()
			}
			s.pos = min(s.pos+3, len(s.src))
			continue
		}
		c := s.src[s.pos]
		switch c {
		case '"', '\'':
			s.quoted(c)
			continue
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case '#':
			s.skipLine()
			if depth <= 0 {
				return
			}
			continue
		case '\n':
			if depth <= 0 {
				s.advance()
				return
			}
		}
		s.advance()
	}
}
