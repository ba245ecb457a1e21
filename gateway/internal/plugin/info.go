package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// Info describes a loaded plugin for operators: which module is running,
// built for which ABI, called at which stages and allowed to do what.
type Info struct {
	Name        string
	Path        string
	SHA256      string // hex, of the module's bytes as loaded
	ABIVersion  uint32
	Stages      abi.StageSet // the stages it is called at
	Permissions abi.Permissions
	// Capabilities are the host functions granted in gateway.toml.
	Capabilities abi.Capability
	Instances    int // the pool size
	// Services are where it runs (Spec.Services).
	Services []string
}

// newInfo records what Load knows before the module runs.
func newInfo(s Spec, wasm []byte) Info {
	sum := sha256.Sum256(wasm)
	// checkModule refuses any other version, so a loaded plugin speaks ours.
	return Info{Name: s.Name, Path: s.Path, SHA256: hex.EncodeToString(sum[:]), ABIVersion: abi.Version,
		Capabilities: s.Capabilities, Services: slices.Clone(s.Services)}
}

// Info describes the plugin.
func (p *Plugin) Info() Info {
	i := p.info
	i.Stages, i.Permissions, i.Instances = p.stages, p.permissions, cap(p.pool)
	return i
}
