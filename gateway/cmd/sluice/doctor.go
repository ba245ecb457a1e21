package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/doctor"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// doctorCmd checks the published DNS records and the certificate.
func doctorCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("doctor", "usage: sluice doctor [-c FILE] [-nameserver HOST:PORT] [-ca-file FILE] [-format text|json]\n\nChecks what `sluice dns` says to publish against live DNS, and the\ncertificate STARTTLS presents, and whether [cluster] redis answers, and reports each as ok, warn or error with\nthe fix. Exit status: 1 if any is an error, else 0.\n\n", stderr)
	file := configFlag(fs)
	ns := fs.String("nameserver", "", "ask this nameserver (`ip:port`, or a name: a domain's own nameserver shows records before they spread) rather than [dns] nameservers or /etc/resolv.conf; [dns] static records are never used")
	format := fs.String("format", "text", "`text` or json (a list of {status, check, name, message, fix})")
	caFile := fs.String("ca-file", "", "a PEM `file` of roots that senders trust besides the system's: for certificates from a private CA (a tls.acme_directory of your own)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return usageStatus(err)
	}
	// The doctor asks whether senders can verify our certificates; only
	// the operator knows which senders trust a private CA, so this is a
	// flag of the doctor's and not [relay] tls_ca_file, which says what
	// this gateway trusts when it sends.
	roots, err := certs.SystemRootsAnd(*caFile)
	if err != nil {
		fmt.Fprintln(stderr, "sluice doctor: -ca-file:", err)
		return 2
	}
	cfg, plan, status := loadPlan("doctor", *file, *format, "text", stderr)
	if status != 0 {
		return status
	}
	// As the gateway builds its resolver, but without [dns] static: those
	// records answer only Sluice, and the doctor checks what the world sees.
	rc := resolver.Config{Nameservers: cfg.DNS.Nameservers, Timeout: cfg.DNS.Timeout.D()}
	if *ns != "" {
		addr, err := nameserverAddr(ctx, *ns)
		if err != nil {
			fmt.Fprintln(stderr, "sluice doctor: -nameserver:", err)
			return 2
		}
		rc.Nameservers = []string{addr}
	}
	res, err := resolver.New(rc)
	if err != nil {
		fmt.Fprintln(stderr, "sluice doctor:", err)
		return 1
	}
	findings := doctor.Run(ctx, doctor.Options{Config: cfg, Plan: plan, Resolver: res, Roots: roots})
	if *format == "json" {
		err = doctor.WriteJSON(stdout, findings)
	} else {
		err = doctor.Write(stdout, findings)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice doctor:", err)
		return 1
	}
	if doctor.Failed(findings) {
		return 1
	}
	return 0
}

// nameserverAddr turns -nameserver's value into ip:port: an IP address,
// ip:port, or a name, with or without a port, looked up by the system.
func nameserverAddr(ctx context.Context, ns string) (string, error) {
	host, port, err := net.SplitHostPort(ns)
	if err != nil {
		host, port = ns, "53"
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(host, port), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return "", fmt.Errorf("%q is not an address, and looking it up failed: %v", ns, err)
	}
	return net.JoinHostPort(addrs[0].Unmap().String(), port), nil
}
