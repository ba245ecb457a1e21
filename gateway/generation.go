package gateway

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/auth"
	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/smtpd"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
	"github.com/sluice-mail/sluice/gateway/internal/submission"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// buildParts builds, from cfg, everything a generation holds: the
// resolver with its static records, the relay, SRS with its secrets, the
// DKIM keys with the signer and the ARC sealer, the STARTTLS certificate,
// the checks, the scoring thresholds and the filter chains (of the MX and
// of the submission service). It reads every
// file they name now, so that a generation never changes once built.
// Problems come back as config.Errors at the line of the setting
// concerned, all of them at once; then nothing built is left open.
func (g *Gateway) buildParts(ctx context.Context, cfg *config.Config) (smtpd.Parts, config.Errors) {
	var errs config.Errors
	fail := func(path, format string, args ...any) { errs = append(errs, cfg.ErrorAt(path, format, args...)) }
	p := smtpd.Parts{Scoring: smtpd.Scoring{Reject: cfg.Scoring.Reject, Quarantine: cfg.Scoring.Quarantine}}

	var err error
	if p.TLS, err = g.tlsConfig(cfg); err != nil {
		fail("smtp.tls_cert", "%v", err)
	}
	res, err := g.resolver(cfg)
	if err != nil {
		fail("dns.static", "dns: %v", err)
	}
	if p.SRS, err = newSRS(cfg); err != nil {
		fail("srs", "srs: %v", err)
	}
	keys, keysOK := loadKeys(cfg, fail)
	if len(cfg.DKIM.Keys) == 0 {
		g.log.Warn("no [[dkim.key]] configured: forwarded mail will be neither DKIM-signed nor ARC-sealed")
	} else if keysOK {
		p.Signer, err = dkim.NewSigner(dkim.SignerConfig{Domain: cfg.DKIM.Domain, Keys: keys, Headers: cfg.DKIM.Headers})
		if err != nil {
			fail("dkim", "dkim: %v", err)
		}
		p.SignRecipientDomain = cfg.DKIM.SignRecipientDomain
	}
	if cfg.ARC.Seal != nil && *cfg.ARC.Seal && !cfg.AuthEnabled() {
		fail("arc.seal", "arc.seal: sealing needs the checks of [auth] enabled, to know the chain it extends")
	}
	p.Seal = sealConfig(cfg, keys)
	if res == nil {
		return smtpd.Parts{}, errs // the relay, checks and plugins all need the resolver
	}
	p.DNS, p.ClientNameTimeout = res, cfg.DNS.ClientNameTimeout.D()
	if cfg.AuthEnabled() {
		discovery, _ := dmarc.ParseDiscovery(cfg.Auth.DMARCDiscovery) // validated with the config
		p.Auth = auth.New(auth.Config{Hostname: cfg.Hostname, Resolver: res, Timeout: cfg.Auth.Timeout.D(), DMARCDiscovery: discovery})
	}
	checkSources(cfg, &errs)
	rc := relayConfig(cfg, g.log, g.metrics.relayStep)
	if err := g.relayTLS(cfg, res, &rc); err != nil {
		fail("relay.tls_ca_file", "relay.tls_ca_file: %v", err)
	} else if p.Relay, err = relay.New(rc, res); err != nil {
		fail("relay", "relay: %v", err)
	}
	if cfg.Submission.Enabled() {
		if p.Logins, err = g.logins(cfg); err != nil {
			fail("submission.user", "%v", err)
		}
	}
	chain, chainErrs := g.buildChain(ctx, cfg, res)
	errs = append(errs, chainErrs...)
	if chain != nil {
		// Each service's chain; a plugin in both is shared, not loaded twice.
		p.Chain, p.SubmissionChain = chain.For(config.ServiceMX), chain.For(config.ServiceSubmission)
	}
	if len(errs) > 0 {
		if chain != nil {
			chain.Close(ctx)
		}
		if p.Relay != nil {
			p.Relay.Close()
		}
		return smtpd.Parts{}, errs
	}
	return p, nil
}

// resolver makes the resolver of a new generation. The first one's cache
// serves every later generation too, so that a reload forgets no answer.
func (g *Gateway) resolver(cfg *config.Config) (*resolver.Resolver, error) {
	c := resolver.Config{Nameservers: cfg.DNS.Nameservers, Timeout: cfg.DNS.Timeout.D(), Static: cfg.DNS.Static,
		DNSSEC: cfg.DNS.DNSSEC}
	if g.dns != nil {
		return g.dns.Reconfigured(c)
	}
	c.Metrics = g.metrics.registry
	r, err := resolver.New(c)
	if err == nil {
		g.dns = r
	}
	return r, err
}

// starttls reports whether cfg offers STARTTLS. That is fixed for the
// server's life; the certificate is not.
func starttls(cfg *config.Config) bool {
	return cfg.SMTP.TLSCert != "" || cfg.SMTP.TLSSelfSigned || cfg.TLS.ACME
}

func (g *Gateway) tlsConfig(cfg *config.Config) (*tls.Config, error) {
	s := cfg.SMTP
	switch {
	case cfg.TLS.ACME && g.acme != nil:
		// Each handshake takes the certificate ACME has now, so a renewal
		// serves at once, with no reload.
		return &tls.Config{GetCertificate: g.acme.STARTTLSCertificate}, nil
	case s.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(cfg.Path(s.TLSCert), cfg.Path(s.TLSKey))
		if err != nil {
			return nil, fmt.Errorf("smtp.tls_cert: %v", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
	case s.TLSSelfSigned:
		cert, err := certs.SelfSigned(cfg.Hostname)
		if err != nil {
			return nil, err
		}
		g.log.Warn("STARTTLS uses a self-signed certificate made at start-up; set smtp.tls_cert and smtp.tls_key for a real MX")
		return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
	}
	return nil, nil
}

func newSRS(cfg *config.Config) (*srs.Rewriter, error) {
	s := cfg.SRS
	secrets := append([]string(nil), s.Secrets...)
	if s.SecretsFile != "" {
		b, err := os.ReadFile(cfg.Path(s.SecretsFile))
		if err != nil {
			return nil, fmt.Errorf("secrets_file: %v", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				secrets = append(secrets, line)
			}
		}
	}
	return srs.New(srs.Config{
		Domain:     s.Domain,
		Secrets:    secrets,
		MaxAge:     time.Duration(s.MaxAgeDays) * 24 * time.Hour,
		HashLength: s.HashLength,
	})
}

// loadKeys loads every DKIM key, reporting each unreadable one at its own
// line; ok is false if any failed.
func loadKeys(cfg *config.Config, fail func(path, format string, args ...any)) (keys []dkim.Key, ok bool) {
	ok = true
	for i, k := range cfg.DKIM.Keys {
		signer, err := dkim.LoadKey(cfg.Path(k.File))
		if err != nil {
			fail(fmt.Sprintf("dkim.key.%d.file", i), "dkim.key[%d]: %v", i, err)
			ok = false
			continue
		}
		keys = append(keys, dkim.Key{Domain: k.Domain, Selector: k.Selector, Signer: signer})
	}
	return keys, ok
}

// sealConfig picks the key that seals ARC sets: the configured selector,
// or the first RSA key, since every ARC verifier supports rsa-sha256.
func sealConfig(cfg *config.Config, keys []dkim.Key) *arc.SealConfig {
	a := cfg.ARC
	if (a.Seal != nil && !*a.Seal) || !cfg.AuthEnabled() || len(keys) == 0 {
		return nil
	}
	pick := -1
	for i, k := range keys {
		if k.Domain != cfg.DKIM.Domain {
			continue // the seal's d= is the gateway's domain
		}
		if a.Selector != "" && k.Selector == a.Selector {
			pick = i
			break
		}
		if _, isRSA := k.Signer.Public().(*rsa.PublicKey); a.Selector == "" && isRSA && pick < 0 {
			pick = i
		}
	}
	for i := 0; pick < 0 && i < len(keys); i++ {
		if keys[i].Domain == cfg.DKIM.Domain { // validated: there is one
			pick = i
		}
	}
	if pick < 0 {
		return nil
	}
	return &arc.SealConfig{Domain: cfg.DKIM.Domain, Selector: keys[pick].Selector, Key: keys[pick].Signer}
}

// buildChain loads every [[plugin]] of cfg into a new chain, whose dns
// capability asks res. On failure it closes what it loaded and reports
// each plugin's error at its line; a plugin that may be skipped is left
// out instead, unless g.strict.
func (g *Gateway) buildChain(ctx context.Context, cfg *config.Config, res *resolver.Resolver) (*plugin.Chain, config.Errors) {
	var errs config.Errors
	var plugins []*plugin.Plugin
	var missing []plugin.Missing
	for i := range cfg.Plugin {
		p, err := g.loadPlugin(ctx, cfg, i, res)
		if err != nil && !g.strict && cfg.Plugin[i].OnFailure == "skip" {
			g.log.Error("plugin left out of the chain: it failed to load, and its on_failure is skip",
				"plugin", cfg.Plugin[i].Name, "where", cfg.Where(fmt.Sprintf("plugin.%d", i)), "err", err)
			g.metrics.loadFailures.WithLabelValues(cfg.Plugin[i].Name).Inc()
			missing = append(missing, missingPlugin(cfg.Plugin[i]))
			continue
		}
		if err != nil {
			errs = append(errs, cfg.PluginError(i, err)) // plugin.Load names the plugin
			continue
		}
		plugins = append(plugins, p)
	}
	chain := plugin.NewPartialChain(missing, plugins...)
	if len(errs) > 0 {
		chain.Close(ctx)
		return nil, errs
	}
	return chain, nil
}

// missingPlugin describes a plugin left out of the chain by the stages
// it would have been called at: those its entry lists, or, when it lists
// none and so would have been called at every stage it declares, which
// cannot be known without it, every stage.
func missingPlugin(p config.Plugin) plugin.Missing {
	stages := abi.StageSetOf(abi.Stages()...)
	if len(p.Stages) > 0 {
		stages = 0
		for _, name := range p.Stages {
			st, _ := abi.ParseStage(name) // validated by config
			stages |= abi.StageSetOf(st)
		}
	}
	return plugin.Missing{Name: p.Name, Stages: stages, Services: p.Services}
}

func (g *Gateway) loadPlugin(ctx context.Context, cfg *config.Config, i int, res *resolver.Resolver) (*plugin.Plugin, error) {
	p := cfg.Plugin[i]
	raw, err := p.ConfigTOML()
	if err != nil {
		return nil, fmt.Errorf("encoding its config: %v", err)
	}
	var stages []abi.Stage
	for _, name := range p.Stages {
		st, _ := abi.ParseStage(name) // validated by config
		stages = append(stages, st)
	}
	policy, _ := plugin.ParseFailurePolicy(p.OnFailure) // validated by config
	return g.host.Load(ctx, plugin.Spec{
		Name:            p.Name,
		Path:            cfg.Path(p.Path),
		Stages:          stages,
		Config:          raw,
		Hostname:        cfg.Hostname,
		Domains:         cfg.Domains,
		Timeout:         p.Timeout.D(),
		MemoryLimit:     uint64(p.MemoryLimit),
		StackLimit:      uint64(p.StackLimit),
		Instances:       p.Instances,
		Capabilities:    p.Granted(),
		Services:        p.Services,
		OnFailure:       policy,
		Resolver:        res,
		HTTPHosts:       p.HTTPHosts,
		HTTPTimeout:     p.HTTPTimeout.D(),
		HTTPMaxResponse: int64(p.HTTPMaxResponse),
	})
}

func relayConfig(cfg *config.Config, log *slog.Logger, observe func(step string, took time.Duration)) relay.Config {
	r := cfg.Relay
	c := relay.Config{
		Helo:           r.Helo,
		Port:           r.Port,
		DisableIPv6:    r.IPv6 != nil && !*r.IPv6,
		ConnectTimeout: r.ConnectTimeout.D(),
		CommandTimeout: r.CommandTimeout.D(),
		DataTimeout:    r.DataTimeout.D(),
		IdleTimeout:    r.IdleTimeout.D(),
		Logger:         log,
		Observe:        observe,
	}
	if r.MaxIdle != nil {
		c.MaxIdle = *r.MaxIdle
		if c.MaxIdle == 0 {
			c.MaxIdle = -1 // relay reads 0 as "default"; the config's 0 means "keep none"
		}
	}
	for _, src := range r.Sources {
		c.Sources = append(c.Sources, relay.Source{Addr: netip.MustParseAddr(src.Address), Helo: src.Helo}) // validated by config
	}
	return c
}

// checkSources reports each outbound address that new connections cannot
// come from, because it is not (or no longer) on this machine: better
// now than as a failed connection for every message.
func checkSources(cfg *config.Config, errs *config.Errors) {
	for i, src := range cfg.Relay.Sources {
		if err := relay.CheckLocal(netip.MustParseAddr(src.Address)); err != nil {
			*errs = append(*errs, cfg.SourceError(i, "%v", err))
		}
	}
}

// logins are the submission service's users, their failed logins counted
// in the process's one key-value store.
func (g *Gateway) logins(cfg *config.Config) (*submission.Users, error) {
	s := cfg.Submission
	users := make([]submission.User, len(s.Users))
	for i, u := range s.Users {
		users[i] = submission.User{Name: u.Name, PasswordHash: u.PasswordHash, Senders: u.Senders}
	}
	return submission.New(submission.Config{
		Users:              users,
		MaxFailuresPerIP:   s.MaxFailuresPerIP,
		MaxFailuresPerUser: s.MaxFailuresPerUser,
		FailureWindow:      s.FailureWindow.D(),
		KV:                 g.kv,
		Logger:             g.log,
		Metrics:            g.metrics.submission,
	})
}
