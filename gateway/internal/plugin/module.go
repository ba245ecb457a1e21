package plugin

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/plugin/interrupt"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// signature is a function's parameter and result types.
type signature struct{ params, results []api.ValueType }

func (s signature) String() string {
	name := func(ts []api.ValueType) string {
		var n []string
		for _, t := range ts {
			n = append(n, api.ValueTypeName(t))
		}
		return "(" + strings.Join(n, ", ") + ")"
	}
	return name(s.params) + " -> " + name(s.results)
}

func sig(d api.FunctionDefinition) signature {
	return signature{d.ParamTypes(), d.ResultTypes()}
}

func (s signature) equal(o signature) bool {
	return slices.Equal(s.params, o.params) && slices.Equal(s.results, o.results)
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// hostFunctions are the imports of module "sluice" this host provides.
func hostFunctions() map[string]signature {
	m := make(map[string]signature, len(hostFuncTable))
	for _, f := range hostFuncTable {
		m[f.name] = signature{f.params, f.results}
	}
	return m
}

// guestExports are the functions every plugin must export.
func guestExports() map[string]signature {
	return map[string]signature{
		abi.ExportBuffer:    {params: []api.ValueType{i32}, results: []api.ValueType{i32}},
		abi.ExportConfigure: {params: []api.ValueType{i32}, results: []api.ValueType{i64}},
		abi.ExportHandle:    {params: []api.ValueType{i32}, results: []api.ValueType{i64}},
	}
}

// checkModule checks that a compiled module is a plugin of our ABI version:
// it imports our version marker, only imports what we provide, and exports
// what we call. The errors read after the module's path.
func checkModule(m wazero.CompiledModule) error {
	host := hostFunctions()
	marker := false
	for _, d := range m.ImportedFunctions() {
		mod, name, _ := d.Import()
		switch {
		case mod == abi.HostModule && strings.HasPrefix(name, "abi_version_"):
			if name != abi.VersionMarker {
				v := strings.TrimPrefix(name, "abi_version_")
				if _, err := strconv.Atoi(v); err != nil {
					return fmt.Errorf("imports %s.%s, which is no ABI version marker", mod, name)
				}
				return fmt.Errorf("was built for ABI version %s; this gateway speaks %d", v, abi.Version)
			}
			marker = true
		case mod == abi.HostModule:
			want, ok := host[name]
			if !ok {
				return fmt.Errorf("imports %s.%s, which this gateway does not provide", mod, name)
			}
			if got := sig(d); !got.equal(want) {
				return fmt.Errorf("imports %s.%s as %s; it is %s", mod, name, got, want)
			}
		case mod == "wasi_snapshot_preview1":
		case mod == interrupt.YieldModule && name == interrupt.YieldFunc: // added by interrupt.Instrument
		default:
			return fmt.Errorf("imports %s.%s; a plugin may import only from %q and wasi_snapshot_preview1", mod, name, abi.HostModule)
		}
	}
	if !marker {
		return fmt.Errorf("is not a Sluice plugin (imports no %s.abi_version_N)", abi.HostModule)
	}
	exports := m.ExportedFunctions()
	for name, want := range guestExports() {
		d, ok := exports[name]
		if !ok {
			return fmt.Errorf("does not export %s", name)
		}
		if got := sig(d); !got.equal(want) {
			return fmt.Errorf("exports %s as %s; it must be %s", name, got, want)
		}
	}
	if _, ok := m.ExportedMemories()["memory"]; !ok {
		return fmt.Errorf("does not export its memory as \"memory\"")
	}
	return nil
}
