package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dnsrecords"
)

// dnsCmd prints the DNS records the configuration needs.
func dnsCmd(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("dns", "usage: sluice dns [-c FILE] [-format zone|json]\n\nPrints the DNS records the configuration needs, for every served domain\n(MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT) and for the gateway itself (its\naddresses, their reverse DNS), each with a comment saying what it is for.\nThe DKIM records are made from the private key files. `sluice doctor`\nchecks what is published.\n\n", stderr)
	file := configFlag(fs)
	format := fs.String("format", "zone", "`zone` (zone-file lines) or json (a list of {name, type, ttl, value, comment, domain})")
	if err := parseFlags(fs, args, stdout); err != nil {
		return usageStatus(err)
	}
	if *format != "zone" && *format != "json" {
		fmt.Fprintf(stderr, "sluice dns: -format %q is neither zone nor json\n", *format)
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	plan, err := dnsrecords.Build(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *format == "json" {
		err = plan.WriteJSON(stdout)
	} else {
		err = plan.WriteZone(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice dns:", err)
		return 1
	}
	return 0
}
