package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// identityTimeout bounds the whole check of the outbound identity.
const identityTimeout = 30 * time.Second

// sameSources reports whether two lists of outbound addresses are the
// same, wherever in the file they are set.
func sameSources(a, b []config.Source) bool {
	return slices.EqualFunc(a, b, func(x, y config.Source) bool { return x.Address == y.Address && x.Helo == y.Helo })
}

// checkIdentity looks, in the background, at what destinations see of each
// outbound address: its reverse DNS, and whether its HELO name resolves to
// it. Many destinations refuse or junk mail from an address without
// forward-confirmed reverse DNS, so each problem is a warning in the log.
// It runs at start and when a reload changes the sources; it never
// delays either, and DNS that is down is one more warning, not a failure.
func (g *Gateway) checkIdentity(res *resolver.Resolver, cfg *config.Config) {
	sources := cfg.Relay.Sources
	if len(sources) == 0 {
		return // the kernel picks the address: nothing known to check
	}
	warnMissingFamilies(cfg, g.log)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), identityTimeout)
		defer cancel()
		for _, src := range sources {
			checkSourceDNS(ctx, res, src, g.log)
		}
	}()
}

// warnMissingFamilies warns of each address family the relay connects
// over without a source of it (config.SourceFamiliesMissing says why).
func warnMissingFamilies(cfg *config.Config, log *slog.Logger) {
	for _, f := range cfg.SourceFamiliesMissing() {
		fix := ""
		if f == "IPv6" {
			fix = ", or set [relay] ipv6 = false if it has none"
		}
		log.Warn("no " + f + " [[relay.source]]: mail to " + f + " destinations leaves from an address the kernel picks, which SPF does not list and whose reverse DNS nobody checked; add a [[relay.source]] with this machine's public " + f + " address" + fix)
	}
}

// checkSourceDNS logs a warning for each thing wrong with src in DNS: no
// PTR, a PTR that does not resolve back to it (no FCrDNS), a HELO name
// whose A or AAAA records do not include it, or DNS that failed.
func checkSourceDNS(ctx context.Context, res *resolver.Resolver, src config.Source, log *slog.Logger) {
	addr := netip.MustParseAddr(src.Address) // validated by config
	log = log.With("address", src.Address, "helo", src.Helo)
	switch name, result := res.VerifiedName(ctx, addr); result {
	case resolver.NamePass:
		log.Info("outbound address: reverse DNS is forward-confirmed", "ptr", name)
	case resolver.NameNone:
		log.Warn("outbound address has no PTR record: many destinations refuse or junk its mail; have its provider set one to the HELO name")
	case resolver.NameFail:
		log.Warn("outbound address: its PTR names do not resolve back to it (no forward-confirmed reverse DNS): many destinations refuse or junk its mail; point the PTR at a name whose A/AAAA is this address, such as the HELO name",
			"ptr", strings.Join(ptrNames(ctx, res, addr), ","))
	default:
		log.Warn("outbound address: cannot check its reverse DNS: DNS failed")
	}
	network, rr := "ip4", "A"
	if addr.Is6() {
		network, rr = "ip6", "AAAA"
	}
	addrs, err := res.LookupNetIP(ctx, network, src.Helo+".")
	if err != nil && !isNotFound(err) {
		log.Warn("outbound address: cannot check that its HELO name resolves to it: DNS failed", "err", err)
		return
	}
	if !slices.Contains(addrs, addr) {
		var found []string
		for _, a := range addrs {
			found = append(found, a.String())
		}
		log.Warn("outbound address: its HELO name does not resolve to it: destinations that check the name may refuse its mail; add the address to the name's "+rr+" records",
			"resolves_to", strings.Join(found, ","))
	}
}

// ptrNames are addr's PTR names, to name in a warning.
func ptrNames(ctx context.Context, res *resolver.Resolver, addr netip.Addr) []string {
	rev, _ := dns.ReverseAddr(addr.String())
	rrs, _ := res.Query(ctx, rev, dns.TypePTR)
	var names []string
	for _, rr := range rrs {
		if ptr, ok := rr.(*dns.PTR); ok {
			names = append(names, strings.TrimSuffix(ptr.Ptr, "."))
		}
	}
	return names
}

func isNotFound(err error) bool {
	dnsErr, ok := errors.AsType[*net.DNSError](err)
	return ok && dnsErr.IsNotFound
}
