package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sluice-mail/sluice/gateway"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// versionCmd prints which build this is: what to quote in a bug report,
// the plugin ABI version a plugin must be built for, and what signs with RSA
// keys (crypto/rsa, or OpenSSL in a build made with make build OPENSSL=1).
func versionCmd(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "usage: sluice version\n\nPrints the version, the commit it was built from, the Go version that\nbuilt it, the plugin ABI version it speaks and what makes its RSA\nsignatures (DKIM, ARC): Go's crypto/rsa, or OpenSSL (make build OPENSSL=1).\n", stderr)
	if err := parseFlags(fs, args, stdout); err != nil {
		return usageStatus(err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	b := gateway.BuildInfo()
	fmt.Fprintf(stdout, "sluice %s\nrevision:   %s\ngo:         %s\nplugin ABI: %d\nRSA signer: %s\n", b.Version, b.Revision, b.GoVersion, abi.Version, b.RSASigner)
	return 0
}
