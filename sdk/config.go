package sdk

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// Config is what a plugin is told when it is configured.
type Config struct {
	Name     string // the plugin's name in gateway.toml
	Hostname string // the gateway's hostname
	Raw      []byte // the plugin's [plugin.config] table, as TOML

	perms abi.Permissions
}

// Decode reads the plugin's settings into v (a pointer to a struct with toml
// tags). It is strict: a key that v has no field for is an error naming the
// key, so that a typo in gateway.toml is refused instead of ignored.
func (c *Config) Decode(v any) error {
	md, err := toml.NewDecoder(bytes.NewReader(c.Raw)).Decode(v)
	if err != nil {
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return fmt.Errorf("unknown setting %s", strings.Join(keys, ", "))
	}
	return nil
}

// Permit declares actions and changes the plugin may take, adding to those
// declared before. The host treats a verdict outside them as a failure of
// the plugin; Continue with no changes needs no permission.
func (c *Config) Permit(p abi.Permissions) { c.perms |= p }

// Permissions returns what has been permitted so far, for tests to check
// verdicts against.
func (c *Config) Permissions() abi.Permissions { return c.perms }
