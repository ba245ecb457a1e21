package main

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// sluice version, -version and --version print the same five facts. (The
// version the Makefile stamps in is checked by TestMakeInstall.)
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "-version", "--version"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{arg}, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("sluice %s: exit %d, %s", arg, code, stderr.String())
		}
		lines := strings.Split(stdout.String(), "\n")
		if len(lines) != 6 || !strings.HasPrefix(lines[0], "sluice ") || !strings.HasPrefix(lines[1], "revision:") {
			t.Errorf("sluice %s printed %q", arg, stdout.String())
		}
		for _, want := range []string{"go:         " + runtime.Version(), fmt.Sprintf("plugin ABI: %d", abi.Version), "RSA signer: " + dkim.RSABackend()} {
			if !strings.Contains(stdout.String(), want+"\n") {
				t.Errorf("sluice %s printed %q, want a line %q", arg, stdout.String(), want)
			}
		}
	}
}
