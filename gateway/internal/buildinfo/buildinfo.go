// Package buildinfo says which build of Sluice is running: for
// `sluice version` and the sluice_build_info metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// version and revision are set by the Makefile, from `git describe
// --always --dirty` and `git rev-parse HEAD`:
//
//	go build -ldflags "-X github.com/sluice-mail/sluice/gateway/internal/buildinfo.version=v1.2.0-3-gabc1234"
//
// A build without them (go build, go install) falls back to what the Go
// toolchain recorded in the binary, which is nothing with -buildvcs=false.
var version, revision string

// Info is what a binary knows about its own build.
type Info struct {
	Version   string // a release tag, `git describe` output, or "devel"
	Revision  string // the full commit hash, "-dirty" appended if the tree had changes; "unknown" if not recorded
	GoVersion string // the toolchain that built the binary, as runtime.Version says it
	// RSASigner says what makes (and verifies) RSA signatures: Go's
	// crypto/rsa, or OpenSSL and its version. Read leaves it empty; the
	// caller sets it from dkim.RSABackend() (package gateway's BuildInfo),
	// since dkim's tests import this package, through the metrics.
	RSASigner string
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Revision == "" {
			info.Revision = vcsRevision(bi.Settings)
		}
		// go install module@v1.2.0 records the module's version; a build
		// in a checkout records "(devel)", or a pseudo-version from VCS.
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}

// vcsRevision reads the commit the Go toolchain stamps into a binary built in
// a git checkout (-buildvcs, on by default).
func vcsRevision(settings []debug.BuildSetting) string {
	var rev, modified string
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" && modified == "true" {
		rev += "-dirty"
	}
	return rev
}
