package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/tomlkeys"
)

// Config is what a plugin is told when it is configured.
type Config struct {
	Name     string // the plugin's name in gateway.toml
	Hostname string // the gateway's hostname
	Raw      []byte // the plugin's [plugin.config] table, as TOML
	// Domains are the domains the gateway is the MX for, as A-labels in
	// lower case: mail sent to one of them comes back to the gateway, so a
	// plugin should refuse settings that forward there. Empty from a host
	// that predates it.
	Domains []string

	perms abi.Permissions
}

// Decode reads the plugin's settings into v (a pointer to a struct with toml
// tags). It is strict: a key that v has no field for is an error naming the
// key, and the one probably meant, so that a typo in gateway.toml is
// refused instead of ignored. Its errors are SettingErrors, so that the
// gateway points at the line.
func (c *Config) Decode(v any) error {
	md, err := toml.NewDecoder(bytes.NewReader(c.Raw)).Decode(v)
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if err != nil {
		// "toml: line N (last key "k"): ...": N counts lines of Raw, which
		// the host wrote, not of gateway.toml; the key finds the line, once
		// the entry of each list of tables is added to it (toml leaves it
		// out).
		msg := strings.TrimPrefix(err.Error(), "toml: ")
		var line int
		var key string
		if n, _ := fmt.Sscanf(msg, "line %d (last key %q): ", &line, &key); n == 2 && t != nil {
			path := tomlkeys.Entry(string(c.Raw), t, strings.Split(key, "."))
			return &SettingError{Key: strings.Join(path, "."),
				Err: fmt.Errorf("%s: %s", tomlkeys.String(path), typeError(msg[strings.Index(msg, "): ")+3:]))}
		}
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		// Once each, and a table without the keys inside it.
		var keys []toml.Key
		seen := map[string]bool{}
		for _, k := range und {
			if !seen[k.String()] && (len(k) < 2 || !seen[k[:len(k)-1].String()]) {
				keys = append(keys, k)
			}
			seen[k.String()] = true
		}
		first := keys[0].String() // in the order of the text
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		return &SettingError{Key: first, Err: errors.New(unknownSettings(t, keys))}
	}
	return nil
}

// unknownSettings says which keys the settings of type t do not have,
// and for each the one probably meant: "unknown setting rule.txt; did you
// mean "text"?".
func unknownSettings(t reflect.Type, keys []toml.Key) string {
	var b strings.Builder
	b.WriteString("unknown setting ")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k.String())
		var known []string
		if t != nil {
			if parent, ok := tomlkeys.Type(t, k[:len(k)-1]); ok {
				known = tomlkeys.Names(parent)
			}
		}
		if best := tomlkeys.Nearest(k[len(k)-1], known); best != "" {
			if len(keys) == 1 {
				fmt.Fprintf(&b, "; did you mean %q?", best)
			} else {
				fmt.Fprintf(&b, " (did you mean %q?)", best)
			}
		}
	}
	return b.String()
}

// typeError says toml's type mismatch in the words of a config file:
// "expected a whole number, got a string".
func typeError(msg string) string {
	var got, want string
	if n, _ := fmt.Sscanf(msg, "incompatible types: TOML value has type %s destination has type %s", &got, &want); n != 2 {
		return msg
	}
	words := map[string]string{
		"string": "a string", "int64": "a number", "integer": "a whole number", "float64": "a number", "boolean": "true or false",
		"float": "a number", "bool": "true or false", "slice": "a list", "[]interface": "a list",
		"map[string]interface": "a table", "struct": "a table", "time.Time": "a date",
	}
	got, want = strings.TrimSuffix(got, ";"), strings.TrimSuffix(want, "{}")
	if words[got] == "" || words[want] == "" {
		return msg
	}
	return "expected " + words[want] + ", got " + words[got]
}

// SettingError is an error about one setting of the plugin's config.
// Returned (or wrapped) by Configure, it tells the gateway which setting
// to point at: `sluice check` reports it at that line of gateway.toml.
type SettingError struct {
	// Key is the setting's dotted path in the config table, entries of a
	// list of tables numbered from 0: "rule.1.to" for the to of the
	// second [[plugin.config.rule]]. Without the number ("rule.to") the
	// gateway points at the first entry that has the key.
	Key string
	Err error
}

func (e *SettingError) Error() string { return e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

// Permit declares actions and changes the plugin may take, adding to those
// declared before. The host treats a verdict outside them as a failure of
// the plugin; Continue with no changes needs no permission.
func (c *Config) Permit(p abi.Permissions) { c.perms |= p }

// Permissions returns what has been permitted so far, for tests to check
// verdicts against.
func (c *Config) Permissions() abi.Permissions { return c.perms }

// Duration is a setting that is a length of time, written in TOML as a
// string: a number and a unit, "30s", "10m", "1h", "2d" (days of 24
// hours), or anything time.ParseDuration reads ("1h30m"). It must be
// positive. String writes it back in the largest unit that divides it.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler, which the config
// decoder uses.
func (d *Duration) UnmarshalText(text []byte) error {
	s := string(text)
	var v time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return fmt.Errorf("duration %q: not a whole number of days", s)
		}
		v = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if v, err = time.ParseDuration(s); err != nil {
			return fmt.Errorf("duration %q: want a number and a unit: 30s, 10m, 1h, 2d", s)
		}
	}
	if v <= 0 {
		return fmt.Errorf("duration %q: must be more than 0", s)
	}
	*d = Duration(v)
	return nil
}

// String writes d as "45s", "10m", "1h", "2d", or as time.Duration does
// when no single unit fits.
func (d Duration) String() string {
	v := time.Duration(d)
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if v >= u.unit && v%u.unit == 0 {
			return strconv.FormatInt(int64(v/u.unit), 10) + u.name
		}
	}
	return v.String()
}
