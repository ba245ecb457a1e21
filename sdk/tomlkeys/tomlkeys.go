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
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Entry returns key, a path at which decoding src into a value of type t
// failed as toml reports it (without entry numbers: "plugin.name"), with
// the number of the entry of each array of tables along it added:
// ["plugin", "1", "name"]. The entry is the first whose value at the path
// fails to decode alone: toml decodes entries in order and stops at the
// first error. The key is returned as it was if src does not parse or no
// value fails.
func Entry(src string, t reflect.Type, key []string) []string {
	var top map[string]toml.Primitive
	md, err := toml.Decode(src, &top)
	if err != nil || len(key) == 0 {
		return key
	}
	if path, ok := locate(md, top, t, key); ok {
		return path
	}
	return key
}

// locate finds the value at key in table, of type t, that fails to decode
// into its setting's type; key is returned with entry numbers, and ok
// false if no value fails. Each value is decoded by toml itself, as
// Primitives are, so that what fails here is what failed in the whole.
func locate(md toml.MetaData, table map[string]toml.Primitive, t reflect.Type, key []string) (_ []string, ok bool) {
	value, ok := table[key[0]]
	if !ok {
		return nil, false
	}
	ft, ok := Type(t, key[:1])
	if !ok {
		return nil, false
	}
	here := key[:1:1]
	if len(key) == 1 {
		return here, md.PrimitiveDecode(value, reflect.New(ft).Interface()) != nil
	}
	if ft.Kind() == reflect.Slice && deref(ft.Elem()).Kind() == reflect.Struct {
		var entries []toml.Primitive
		if md.PrimitiveDecode(value, &entries) != nil {
			return nil, false
		}
		for i, e := range entries {
			var sub map[string]toml.Primitive
			if md.PrimitiveDecode(e, &sub) != nil {
				continue
			}
			if p, ok := locate(md, sub, deref(ft.Elem()), key[1:]); ok {
				return append(append(here, strconv.Itoa(i)), p...), true
			}
		}
		return nil, false
	}
	var sub map[string]toml.Primitive
	if md.PrimitiveDecode(value, &sub) != nil {
		return nil, false
	}
	p, ok := locate(md, sub, ft, key[1:])
	return append(here, p...), ok
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
