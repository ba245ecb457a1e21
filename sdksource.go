// Package sluice holds the plugin SDK's source code, for `sluice plugin
// new` to write beside a new plugin: an installed sluice binary is then all
// a plugin author needs, with no published module to fetch. It lives at the
// module's root because go:embed reaches only files below the package, and
// go.mod and go.sum say what the SDK requires.
package sluice

import (
	"embed"
	"io/fs"
)

//go:embed go.mod go.sum sdk/*.go sdk/abi/*.go sdk/sdktest/*.go sdk/tomlkeys/*.go sdk/ABI.md
var sdkSource embed.FS

// SDKSource returns the SDK's packages (sdk, sdk/abi, sdk/sdktest,
// sdk/tomlkeys, with their tests) and the module's go.mod and go.sum, at
// their paths in the repository.
func SDKSource() fs.FS { return sdkSource }
