// Package tomlkeys finds the keys behind an error of decoding TOML into a
// Go struct, for messages a person can act on: which entry of an array of
// tables a type error is in (BurntSushi/toml names the key without it),
// the settings a table has, and the one a misspelt key probably meant.
//
// The gateway uses it for gateway.toml and the SDK for a plugin's own
// settings, so that both say the same things the same way. It is part of
// the SDK, whose source `sluice plugin new` copies beside a plugin, and so
// imports nothing of the gateway.
package tomlkeys

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Entry returns key, a path at which decoding src into a value of type t
// failed as toml reports it (without entry numbers: "plugin.name"), with
// the number of the entry of each array of tables along it added:
// ["plugin", "1", "name"]. The entry is the first whose value fails
// alone: toml decodes entries in order and stops at the first error. The
// key is returned as it was if src does not parse or no entry fails.
func Entry(src string, t reflect.Type, key []string) []string {
	var data map[string]any
	if _, err := toml.Decode(src, &data); err != nil {
		return key
	}
	root := prune(data, key)
	fails := func() bool {
		var b bytes.Buffer
		if err := toml.NewEncoder(&b).Encode(root); err != nil {
			return false
		}
		_, err := toml.Decode(b.String(), reflect.New(t).Interface())
		return err != nil
	}
	if !fails() {
		return key
	}
	// Narrow each array of tables on the path to its first failing entry,
	// from the outermost in.
	var out []string
	table := root
	for i, k := range key {
		out = append(out, k)
		v, ok := table[k]
		if !ok {
			return append(out, key[i+1:]...)
		}
		entries, isArray := v.([]map[string]any)
		if !isArray {
			next, ok := v.(map[string]any)
			if !ok {
				return append(out, key[i+1:]...)
			}
			table = next
			continue
		}
		found := false
		for n, e := range entries {
			table[k] = []map[string]any{e}
			if fails() {
				out, table, found = append(out, strconv.Itoa(n)), e, true
				break
			}
		}
		if !found {
			return append(out, key[i+1:]...)
		}
	}
	return out
}

// prune returns the part of table on the path key: every entry of an
// array of tables along it, each with only that path.
func prune(table map[string]any, key []string) map[string]any {
	if len(key) == 0 {
		return table
	}
	v, ok := table[key[0]]
	if !ok {
		return map[string]any{}
	}
	rest := key[1:]
	if m, ok := v.(map[string]any); ok {
		return map[string]any{key[0]: prune(m, rest)}
	}
	if entries, ok := tables(v); ok {
		for i, e := range entries {
			entries[i] = prune(e, rest)
		}
		return map[string]any{key[0]: entries}
	}
	return map[string]any{key[0]: v}
}

// tables returns a copy of v's entries if v is an array of tables, in
// either form: [[key]] sections, or a list of inline tables.
func tables(v any) ([]map[string]any, bool) {
	switch v := v.(type) {
	case []map[string]any:
		return append([]map[string]any(nil), v...), true
	case []any:
		if len(v) == 0 {
			return nil, false
		}
		entries := make([]map[string]any, len(v))
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			entries[i] = m
		}
		return entries, true
	}
	return nil, false
}

// String writes a numbered path as a person reads it: plugin[1].name.
func String(path []string) string {
	var b strings.Builder
	for i, p := range path {
		switch {
		case isNumber(p) && i > 0:
			b.WriteString("[" + p + "]")
		case i > 0:
			b.WriteString("." + p)
		default:
			b.WriteString(p)
		}
	}
	return b.String()
}

// Type returns the Go type of the setting at path in a value of type t,
// following toml tags (or field names, which toml matches in any case);
// entry numbers in path are skipped. ok is false if t has no such setting.
func Type(t reflect.Type, path []string) (_ reflect.Type, ok bool) {
	for _, name := range path {
		if isNumber(name) {
			continue
		}
		t = deref(t)
		if t.Kind() == reflect.Slice && deref(t.Elem()).Kind() == reflect.Struct {
			t = deref(t.Elem())
		}
		if t.Kind() != reflect.Struct {
			return nil, false
		}
		f, ok := field(t, name)
		if !ok {
			return nil, false
		}
		t = f
	}
	return deref(t), true
}

// Names returns the settings of the table of type t (a struct, or a list
// of them), as they are written in TOML.
func Names(t reflect.Type) []string {
	t = deref(t)
	if t.Kind() == reflect.Slice {
		t = deref(t.Elem())
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case tag == "-" || !f.IsExported() && !f.Anonymous:
		case tag != "":
			names = append(names, tag)
		case f.Anonymous && deref(f.Type).Kind() == reflect.Struct:
			names = append(names, Names(f.Type)...) // toml lifts its fields
		default:
			names = append(names, strings.ToLower(f.Name))
		}
	}
	return names
}

// field returns the type of the setting name of struct type t: an exact
// match first, then one in another case, as toml matches.
func field(t reflect.Type, name string) (reflect.Type, bool) {
	var folded reflect.Type
	for _, n := range Names(t) {
		if n == name || folded == nil && strings.EqualFold(n, name) {
			f, ok := fieldNamed(t, n)
			if !ok {
				continue
			}
			if n == name {
				return f, true
			}
			folded = f
		}
	}
	return folded, folded != nil
}

// fieldNamed finds the field that Names calls name, in embedded structs too.
func fieldNamed(t reflect.Type, name string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case tag == "-" || !f.IsExported() && !f.Anonymous:
		case tag != "":
			if tag == name {
				return f.Type, true
			}
		case f.Anonymous && deref(f.Type).Kind() == reflect.Struct:
			if ft, ok := fieldNamed(deref(f.Type), name); ok {
				return ft, true
			}
		case strings.ToLower(f.Name) == name:
			return f.Type, true
		}
	}
	return nil, false
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func isNumber(s string) bool { _, err := strconv.Atoi(s); return err == nil }

// Nearest returns the candidate closest to name, if it is close enough to
// be a typo of it: at most a third of the name's letters off; "" if none
// is.
func Nearest(name string, candidates []string) string {
	best, bestDist := "", len(name)/3+1
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the number of single-letter insertions, deletions,
// substitutions and swaps of neighbours that turn a into b (the optimal
// string alignment distance).
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
