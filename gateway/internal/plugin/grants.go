package plugin

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero"
)

// A module imports the host functions it calls, and no others: Go's
// linker keeps only the imports a plugin reaches, and a hand-written
// module declares what it uses. A function whose capability was not
// granted would answer ErrDenied on every call, and most plugins read
// that as "nothing found" (no header, no DNS record) and let everything
// through: a filter that silently filters nothing. So such a module is
// refused at load, by `sluice check` and by the gateway alike, with the
// line to write.

// KeyError is a load error caused by one setting of the plugin's
// [[plugin]] entry, so that it can be reported at that setting's line.
type KeyError struct {
	// Key is the setting's path in the entry: "capabilities", or
	// "config.rule.1.to" for one inside [plugin.config].
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// ConfigKey returns Key: config.Config.PluginError looks for it.
func (e *KeyError) ConfigKey() string { return e.Key }

// needed returns the capabilities the module's imports need, and the
// imports of each.
func needed(m wazero.CompiledModule) (abi.Capability, map[abi.Capability][]string) {
	caps := map[string]abi.Capability{}
	for _, f := range hostFuncTable {
		caps[f.name] = f.cap
	}
	var need abi.Capability
	by := map[abi.Capability][]string{}
	for _, d := range m.ImportedFunctions() {
		mod, name, _ := d.Import()
		if c := caps[name]; mod == abi.HostModule && c != 0 && !slices.Contains(by[c], mod+"."+name) {
			need |= c
			by[c] = append(by[c], mod+"."+name)
		}
	}
	return need, by
}

// checkGranted refuses a module that imports a host function whose
// capability was not granted.
func checkGranted(m wazero.CompiledModule, granted abi.Capability) error {
	need, by := needed(m)
	missing := need &^ granted
	if missing == 0 {
		return nil
	}
	var imports, names []string
	for _, name := range abi.CapabilityNames() {
		c, _ := abi.ParseCapability(name)
		if missing.Has(c) {
			imports = append(imports, by[c]...)
			names = append(names, fmt.Sprintf("%q", name))
		}
	}
	fix := "add capabilities = [" + quoted(missing) + "]"
	if granted != 0 {
		fix = "make it capabilities = [" + quoted(granted|missing) + "]"
	}
	return &KeyError{Key: "capabilities", Err: fmt.Errorf("it imports %s but capabilities does not grant %s: %s",
		andList(imports), orList(names), fix)}
}

// quoted writes a set of capabilities as TOML strings.
func quoted(c abi.Capability) string {
	names := strings.Split(c.String(), ",")
	for i, n := range names {
		names[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(names, ", ")
}

func andList(s []string) string { return joinLast(s, " and ") }
func orList(s []string) string  { return joinLast(s, " or ") }

func joinLast(s []string, last string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + last + s[len(s)-1]
}
