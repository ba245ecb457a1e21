package config

import (
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeSection is one section of the configuration as README.md's
// table has a row for it: the top level, a [table] or an [[array]].
type readmeSection struct {
	name string // as the row's first cell names it: "top level", "[smtp]", "[[plugin]]"
	// keys are the names the row must mention in backticks: the keys,
	// the keys of tables and arrays of tables nested in it, and those
	// tables themselves ("[[relay.source]]", "[plugin.config]").
	keys []string
}

// configSections walks the toml tags of Config: a struct field is a
// section with a row of its own, a slice of structs an [[array]] with a
// row of its own; inside a section, a table or array of tables is listed
// in its parent's row with its keys, and a map is free-form, named but
// not listed key by key.
func configSections() []readmeSection {
	top := readmeSection{name: "top level"}
	sections := []readmeSection{}
	t := reflect.TypeFor[Config]()
	for _, f := range reflect.VisibleFields(t) {
		key, ok := tomlKey(f)
		if !ok {
			continue
		}
		switch ft := valueType(f.Type); {
		case isTable(ft):
			sections = append(sections, readmeSection{name: "[" + key + "]", keys: tableKeys(key, ft)})
		case ft.Kind() == reflect.Slice && isTable(valueType(ft.Elem())):
			sections = append(sections, readmeSection{name: "[[" + key + "]]", keys: tableKeys(key, valueType(ft.Elem()))})
		default:
			top.keys = append(top.keys, key)
		}
	}
	return append([]readmeSection{top}, sections...)
}

// tableKeys are the names a row of the table at path must mention.
func tableKeys(path string, t reflect.Type) []string {
	var keys []string
	for _, f := range reflect.VisibleFields(t) {
		key, ok := tomlKey(f)
		if !ok {
			continue
		}
		switch ft := valueType(f.Type); {
		case isTable(ft):
			keys = append(keys, "["+path+"."+key+"]")
			keys = append(keys, tableKeys(path+"."+key, ft)...)
		case ft.Kind() == reflect.Slice && isTable(valueType(ft.Elem())):
			keys = append(keys, "[["+path+"."+key+"]]")
			keys = append(keys, tableKeys(path+"."+key, valueType(ft.Elem()))...)
		case ft.Kind() == reflect.Map:
			keys = append(keys, "["+path+"."+key+"]")
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// tomlKey is the key a field is read from; unexported fields and those
// tagged "-" are not read.
func tomlKey(f reflect.StructField) (string, bool) {
	if !f.IsExported() || f.Anonymous {
		return "", false
	}
	key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if key == "-" {
		return "", false
	}
	if key == "" {
		key = f.Name
	}
	return key, true
}

// valueType is the type a field's value is written as: *bool is a bool.
func valueType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// isTable reports whether t is read from a TOML table: a struct that
// does not read itself from a value, as Duration and Size do.
func isTable(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return t.Kind() == reflect.Struct &&
		!p.Implements(reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()) &&
		!p.Implements(reflect.TypeFor[interface{ UnmarshalTOML(any) error }]())
}

// readmeRows reads the table of README.md's "## Configuration": the
// section each row is about (its first cell, without backticks) and the
// rest of the row.
func readmeRows(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Configuration\n")
	if start < 0 {
		t.Fatal("README.md has no ## Configuration section")
	}
	text = text[start+1:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}
	rows := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		first, rest, ok := strings.Cut(line[2:], "|")
		if !ok {
			t.Fatalf("README.md's configuration table has a row with one cell: %s", line)
		}
		name := strings.Trim(strings.TrimSpace(first), "`")
		if name == "section" { // the heading
			continue
		}
		if _, dup := rows[name]; dup {
			t.Errorf("README.md's configuration table has two %s rows", name)
		}
		rows[name] = rest
	}
	return rows
}

var (
	backticked = regexp.MustCompile("`([^`]*)`")
)

// entryRE finds what the table writes as a key: a key-like word in
// backticks followed by its default in parentheses, or listed with
// others ("`tls_cert` + `tls_key`", "`quarantine`, `reject`: ...").
var entryRE = regexp.MustCompile("`([a-z][a-z0-9_]*)`( \\(|,| \\+|:)")

// entries are the words a row writes as keys, outside the parentheses
// that hold a key's default and meaning (where `none`, is a value).
func entries(row string) []string {
	var words []string
	depth := 0
	for i := 0; i < len(row); i++ {
		switch row[i] {
		case '(':
			depth++
		case ')':
			depth = max(depth-1, 0)
		case '`':
			m := entryRE.FindStringSubmatch(row[i:])
			if m != nil && strings.HasPrefix(row[i:], m[0]) && depth == 0 {
				words = append(words, m[1])
			}
			if end := strings.IndexByte(row[i+1:], '`'); end >= 0 {
				i += end + 1 // past the closing backtick
			}
		}
	}
	return words
}

func backtickedWords(s string) []string {
	var words []string
	for _, m := range backticked.FindAllStringSubmatch(s, -1) {
		words = append(words, m[1])
	}
	return words
}

// TestREADMEListsEveryKey checks README.md's configuration table against
// the keys the configuration accepts, both ways: each section has a row
// that mentions each of its keys in backticks, and each row is about a
// section. Going back from the README is pragmatic, to catch a key
// removed or renamed without policing the prose: what a row writes as a
// key (see entries) must be a key, of its section or, as the [tls] row's
// "certificate of `hostname` (...)" is, of another.
func TestREADMEListsEveryKey(t *testing.T) {
	rows := readmeRows(t)
	sections := configSections()
	// The walk sees what it is about: arrays of tables in a section,
	// free-form tables, keys behind pointers.
	for _, want := range []string{"[[relay.source]]", "address", "mta_sts", "[[dkim.key]]", "[plugin.config]", "http_hosts"} {
		if !slices.ContainsFunc(sections, func(s readmeSection) bool { return slices.Contains(s.keys, want) }) {
			t.Fatalf("the walk of Config's toml tags found no %s: %v", want, sections)
		}
	}
	known := map[string]bool{}
	for _, s := range sections {
		for _, k := range s.keys {
			known[k] = true
		}
	}
	for _, s := range sections {
		row, ok := rows[s.name]
		if !ok {
			t.Errorf("README.md's configuration table has no %s row", s.name)
			continue
		}
		delete(rows, s.name)
		words := backtickedWords(row)
		for _, k := range s.keys {
			if !slices.Contains(words, k) {
				t.Errorf("README.md's %s row does not mention `%s`", s.name, k)
			}
		}
		for _, w := range entries(row) {
			if !known[w] {
				t.Errorf("README.md's %s row names `%s` as a key, but the configuration has no such key", s.name, w)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rows)) {
		t.Errorf("README.md's configuration table has a %s row, but the configuration has no such section", name)
	}
}
