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
	_, plan, status := loadPlan("dns", *file, *format, "zone", stderr)
	if status != 0 {
		return status
	}
	var err error
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

// loadPlan is how sluice dns and sluice doctor start: check -format (json,
// or the command's own format for people), load the configuration and make
// the records it needs. A non-zero status is the exit status after a
// mistake, already reported on stderr.
func loadPlan(cmd, file, format, own string, stderr io.Writer) (cfg *config.Config, plan dnsrecords.Plan, status int) {
	if format != own && format != "json" {
		fmt.Fprintf(stderr, "sluice %s: -format %q is neither %s nor json\n", cmd, format, own)
		return nil, plan, 2
	}
	cfg, err := config.Load(file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, plan, 1
	}
	if plan, err = dnsrecords.Build(cfg); err != nil {
		fmt.Fprintln(stderr, err)
		return nil, plan, 1
	}
	return cfg, plan, 0
}
