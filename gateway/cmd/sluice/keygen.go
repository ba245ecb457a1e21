package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dnsrecords"
)

// keygen writes a DKIM private key and prints the TXT record to publish.
func keygen(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("keygen", "usage: sluice keygen -out FILE [flags]\n\nWrites a DKIM private key (PEM, mode 0600) and prints the DNS TXT record\nto publish for it.\n\n", stderr)
	alg := fs.String("algorithm", "rsa", "key `type`: rsa or ed25519")
	bits := fs.Int("bits", 2048, "RSA key size")
	selector := fs.String("selector", "sluice", "DKIM `selector` the key is published under")
	domain := fs.String("domain", "your-domain.test", "signing `domain`")
	out := fs.String("out", "", "where to write the private key (PEM, mode 0600); required")
	force := fs.Bool("force", false, "overwrite an existing key file")
	if err := parseFlags(fs, args, stdout); err != nil {
		return usageStatus(err)
	}
	if *out == "" {
		fmt.Fprintln(stderr, "sluice keygen: -out is required")
		return 2
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		fmt.Fprintf(stderr, "sluice keygen: %s exists; use -force to replace it\n", *out)
		return 1
	}
	key, err := dkim.GenerateKey(*alg, *bits)
	if err != nil {
		fmt.Fprintf(stderr, "sluice keygen: %v\n", err)
		return 1
	}
	pem, err := dkim.MarshalKey(key)
	if err != nil {
		fmt.Fprintf(stderr, "sluice keygen: %v\n", err)
		return 1
	}
	rec, err := dnsrecords.DKIM(*selector, *domain, key)
	if err != nil {
		fmt.Fprintf(stderr, "sluice keygen: %v\n", err)
		return 1
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintf(stderr, "sluice keygen: %v\n", err)
		return 1
	}
	if err := os.WriteFile(*out, pem, 0o600); err != nil {
		fmt.Fprintf(stderr, "sluice keygen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s; publish this record:\n", *out)
	fmt.Fprintf(stdout, "%s IN TXT %s\n", rec.Name, rec.Value)
	return 0
}
