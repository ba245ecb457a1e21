package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/sluice-mail/sluice/sdk/tomlkeys"
)

// This file turns what the toml package reports into what an operator can
// act on: the line to fix, what was expected in our words, and the key
// that was probably meant.

// decodeError turns toml's error for src into one "file:line: problem".
// toml reports a syntax error as a ParseError and a type mismatch as text
// ("toml: line N (last key "k"): ...").
func (c *Config) decodeError(err error, src []byte) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line, msg := c.syntaxError(pe, src)
		return &Error{File: c.File, Line: fileLine(line, src), Msg: msg}
	}
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	line := 1
	var key string
	if n, _ := fmt.Sscanf(msg, "line %d (last key %q): ", &line, &key); n == 2 {
		// toml names the key without the entry of an array of tables,
		// and its line is that key's in the last entry: find the entry.
		path := tomlkeys.Entry(string(src), configType, strings.Split(key, "."))
		if l, ok := c.lines[joinPath(path)]; ok {
			line = l
		}
		msg = tomlkeys.String(path) + ": " + typeError(key, msg[strings.Index(msg, "): ")+3:])
	}
	return &Error{File: c.File, Line: fileLine(line, src), Msg: msg}
}

// configType is the type gateway.toml is decoded into.
var configType = reflect.TypeFor[Config]()

// syntaxError returns the line the user must fix and what to do there.
// toml's Position.Line is where the parser gave up, which for a value left
// open (a list without its ']', a string without its closing quotes) is a
// later line, or even the end of the file: the fix belongs on the line of
// the key whose value was left open.
func (c *Config) syntaxError(pe toml.ParseError, src []byte) (int, string) {
	// Position.Start is the offending byte; the line toml counts may be
	// past it (a '\n' that ends an unclosed table header).
	line := pe.Position.Line
	if s := pe.Position.Start; s >= 0 && s < len(src) {
		line = strings.Count(string(src[:s]), "\n") + 1
	}
	key := pe.LastKey
	keyLine := 0
	if key != "" {
		keyLine = c.lines.lastLineOf(strings.Split(key, "."), line)
	}
	msg := pe.Message
	open := func(what, closer string) (int, string) {
		if keyLine > 0 && keyLine < line {
			return keyLine, fmt.Sprintf("%s: the %s that starts here is missing its closing %s (the parser stopped at line %d: %s)",
				key, what, closer, line, strings.TrimSpace(lineText(src, line)))
		}
		return line, key + ": " + msg
	}
	switch {
	case strings.HasPrefix(msg, "expected a comma (',') or array terminator (']')"):
		return open("list", "']'")
	case strings.HasPrefix(msg, "expected a comma or an inline table terminator"):
		return open("inline table", "'}' (an inline table ends on the line it starts)")
	case strings.HasPrefix(msg, `unexpected EOF; expected '"""'`):
		return open("multi-line string", `"""`)
	case strings.HasPrefix(msg, `unexpected EOF; expected "'''"`):
		return open("multi-line string", "'''")
	case msg == "strings cannot contain newlines":
		return line, key + ": the string is not closed: end it with a quote on the same line"
	case strings.HasPrefix(msg, "expected '.' or ']' to end table name"), strings.HasPrefix(msg, "expected '.' or ']]' to end table array name"):
		return line, "the table header is not closed: end it with ']' (or ']]' for [[...]])"
	}
	if key != "" && !strings.Contains(msg, key) {
		msg = key + ": " + msg
	}
	return line, msg
}

// lineText returns line n of src.
func lineText(src []byte, n int) string {
	lines := strings.Split(string(src), "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return lines[n-1]
}

var mismatchRE = regexp.MustCompile(`^incompatible types: TOML value has type (\S+); destination has type (\S+)$|^type mismatch for \S+: expected (\S+) but found (\S+)$`)

// typeError rewrites toml's type mismatch for key in our words:
// "expected a list of addresses, got a string".
func typeError(key, msg string) string {
	m := mismatchRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	got, dest := m[1]+m[4], m[2]+m[3]
	t, ok := fieldType(strings.Split(key, "."))
	if !ok {
		return msg
	}
	expected := describe(key, t)
	gotText := tomlTypeNames[got]
	if gotText == "" {
		gotText = got
	}
	// A list whose items are of the wrong type: the destination toml names
	// is the item's.
	if t.Kind() == reflect.Slice && dest != "slice" && dest != "array" && got != "[]interface" {
		gotText = "a list holding " + gotText
	}
	return fmt.Sprintf("expected %s, got %s", expected, gotText)
}

// tomlTypeNames are the types toml names for a value, in our words.
var tomlTypeNames = map[string]string{
	"string": "a string", "int64": "a number", "float64": "a number", "bool": "true or false",
	"time.Time": "a date", "[]interface": "a list", "map[string]interface": "a table",
	"table": "a table", "array": "a list",
}

// listItems names what a list of strings holds, where "strings" says too
// little.
var listItems = map[string]string{
	"domains":             "domain names",
	"smtp.listen":         "addresses",
	"srs.secrets":         "secrets",
	"dkim.headers":        "header field names",
	"dns.nameservers":     "addresses",
	"dns.static":          "records",
	"plugin.stages":       "stage names",
	"plugin.capabilities": "capability names",
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

// describe says what a value of type t at key is expected to be.
func describe(key string, t reflect.Type) string {
	switch t {
	case durationType:
		return `a duration such as "30s"`
	case sizeType:
		return `a size such as "25MiB"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Map:
		return "a table"
	case reflect.Struct:
		return "a table ([" + key + "])"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "tables ([[" + key + "]])"
		}
		if items := listItems[unnumbered(key)]; items != "" {
			return "a list of " + items
		}
		return "a list of strings"
	}
	return t.String()
}

// unnumbered drops the entry numbers from a key path: plugin.0.stages is
// plugin.stages.
func unnumbered(key string) string {
	var out []string
	for _, p := range strings.Split(key, ".") {
		if !isNumber(p) {
			out = append(out, p)
		}
	}
	return joinPath(out)
}

// fieldType returns the Go type of the setting at path; entry numbers in
// path are skipped.
func fieldType(path []string) (reflect.Type, bool) { return tomlkeys.Type(configType, path) }

// unknownKey says that key (a table if table) is not a setting, and
// which one was probably meant.
func unknownKey(key toml.Key, table bool) string {
	name, parent := key[len(key)-1], key[:len(key)-1]
	t, _ := fieldType(parent)
	var known []string
	if t != nil {
		known = tomlkeys.Names(t)
		if t.Kind() == reflect.Slice {
			t = t.Elem()
		}
	}
	where := ""
	if len(parent) > 0 {
		if t != nil && t.Kind() == reflect.Struct && fieldIsList(parent) {
			where = " in [[" + parent.String() + "]]"
		} else {
			where = " in [" + parent.String() + "]"
		}
	}
	best := tomlkeys.Nearest(name, known)
	if table {
		msg := fmt.Sprintf("unknown table [%s]", key)
		if best != "" {
			msg += fmt.Sprintf("; did you mean [%s]?", append(parent[:len(parent):len(parent)], best))
		}
		return msg
	}
	msg := fmt.Sprintf("unknown key %q%s", name, where)
	if best != "" {
		msg += fmt.Sprintf("; did you mean %q?", best)
	}
	return msg
}

// fieldIsList reports whether the table at path is an array of tables.
func fieldIsList(path toml.Key) bool {
	t, ok := fieldType(path)
	return ok && t.Kind() == reflect.Slice
}
