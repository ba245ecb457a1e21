// Package gateway builds a running Sluice from a validated configuration:
// the resolver, SRS, DKIM signer, relay, plugin chain and SMTP server, and
// the dev-mode capture inbox. It is the only place that knows how the
// parts fit together; each part knows only its own settings.
package gateway

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/auth"
	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/inbox"
	"github.com/sluice-mail/sluice/gateway/internal/metrics"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/smtpd"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// Gateway is a built Sluice, ready to listen.
type Gateway struct {
	// cfg is the configuration as started. A reload applies only its
	// [[plugin]] part; everything else takes a restart.
	cfg     *config.Config
	log     *slog.Logger
	host    *plugin.Host
	chains  *smtpd.Chains
	relay   *relay.Relay
	smtp    *smtpd.Server
	inbox   *inbox.Inbox
	metrics *gatewayMetrics
	// strict counts every plugin that fails to load as an error, whatever
	// its on_failure (sluice check).
	strict bool

	reloadMu sync.Mutex // one reload at a time
	closed   bool       // under reloadMu: no more reloads
	seenMu   sync.Mutex
	seen     map[string]stamp // the files the last load read, as it found them

	mu        sync.Mutex
	listeners []net.Listener
	addrs     []string
	admin     net.Listener // nil: no admin listener
}

// New builds every part. Problems that only show when building (a key file
// that cannot be read, a plugin that does not load) come back as
// config.Errors pointing at the line of the setting concerned. A plugin
// whose on_failure is "skip" and that fails to load is left out of the
// chain, logged and counted, as its failures at run time would be. build
// says which binary runs, for sluice_build_info.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, build metrics.Build) (*Gateway, error) {
	return newGateway(ctx, cfg, log, build, false)
}

// Check builds every part as New does, then releases it. Every plugin that
// fails to load is an error here, whatever its on_failure: a check is how
// an operator finds out before mail does.
func Check(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	g, err := newGateway(ctx, cfg, log, metrics.Build{}, true)
	if err != nil {
		return err
	}
	return g.Close()
}

func newGateway(ctx context.Context, cfg *config.Config, log *slog.Logger, build metrics.Build, strict bool) (*Gateway, error) {
	g := &Gateway{cfg: cfg, log: log, metrics: newGatewayMetrics(build), strict: strict}
	var errs config.Errors
	fail := func(path, format string, args ...any) { errs = append(errs, cfg.ErrorAt(path, format, args...)) }

	tlsConfig, err := g.tlsConfig()
	if err != nil {
		fail("smtp.tls_cert", "%v", err)
	}
	res, err := resolver.New(resolver.Config{
		Nameservers: cfg.DNS.Nameservers,
		Timeout:     cfg.DNS.Timeout.D(),
		Static:      cfg.DNS.Static,
		Metrics:     g.metrics.registry,
	})
	if err != nil {
		fail("dns.static", "dns: %v", err)
	}
	rewriter, err := g.srs()
	if err != nil {
		fail("srs", "srs: %v", err)
	}
	keys, keysOK := g.keys(fail)
	var signer *dkim.Signer
	if len(g.cfg.DKIM.Keys) == 0 {
		log.Warn("no [[dkim.key]] configured: forwarded mail will be neither DKIM-signed nor ARC-sealed")
	} else if keysOK {
		signer, err = dkim.NewSigner(dkim.SignerConfig{Domain: cfg.DKIM.Domain, Keys: keys, Headers: cfg.DKIM.Headers})
		if err != nil {
			fail("dkim", "dkim: %v", err)
		}
	}
	if cfg.ARC.Seal != nil && *cfg.ARC.Seal && !cfg.AuthEnabled() {
		fail("arc.seal", "arc.seal: sealing needs the checks of [auth] enabled, to know the chain it extends")
	}
	g.host, err = plugin.NewHost(ctx, plugin.HostConfig{CacheDir: g.cacheDir(), Logger: log, Resolver: res,
		Counters: newPluginCounters(g.metrics.registry)})
	if err != nil {
		return nil, fmt.Errorf("starting the WebAssembly runtime: %w", err)
	}
	g.seen = stampFiles(cfg)
	chain, chainErrs := g.buildChain(ctx, cfg)
	errs = append(errs, chainErrs...)
	if len(errs) > 0 {
		if chain != nil {
			chain.Close(ctx)
		}
		g.Close()
		return nil, errs
	}
	g.chains = smtpd.NewChains(chain, log)
	g.metrics.generation.Set(1)

	g.relay, err = relay.New(g.relayConfig(), res)
	if err != nil {
		g.Close()
		return nil, config.Errors{cfg.ErrorAt("relay", "relay: %v", err)}
	}
	var checker *auth.Checker
	if cfg.AuthEnabled() {
		checker = auth.New(auth.Config{Hostname: cfg.Hostname, Resolver: res, Timeout: cfg.Auth.Timeout.D()})
	}
	g.smtp, err = smtpd.New(smtpd.Config{
		Hostname:            cfg.Hostname,
		Domains:             cfg.Domains,
		SRSDomain:           cfg.SRS.Domain,
		MaxMessageSize:      int64(cfg.SMTP.MaxMessageSize),
		MaxRecipients:       cfg.SMTP.MaxRecipients,
		MaxErrors:           cfg.SMTP.MaxErrors,
		MaxConnections:      cfg.SMTP.MaxConnections,
		MaxConnectionsPerIP: cfg.SMTP.MaxConnectionsPerIP,
		CommandTimeout:      cfg.SMTP.CommandTimeout.D(),
		DataTimeout:         cfg.SMTP.DataTimeout.D(),
		StressTimeout:       cfg.SMTP.StressTimeout.D(),
		MaxLineLength:       cfg.SMTP.MaxLineLength,
		MaxHops:             cfg.SMTP.MaxHops,
		MaxHeaderFields:     cfg.SMTP.MaxHeaderFields,
		TLS:                 tlsConfig,
		Scoring:             smtpd.Scoring{Reject: cfg.Scoring.Reject, Quarantine: cfg.Scoring.Quarantine},

		RejectBareLineEndings: cfg.SMTP.BareLineEndings == "reject",
	}, smtpd.Parts{Chains: g.chains, Relay: g.relay, SRS: rewriter, Signer: signer, Auth: checker, Seal: g.sealConfig(keys),
		Logger: log, Metrics: g.metrics.registry})
	if err != nil {
		g.Close()
		return nil, err
	}
	if cfg.Dev.InboxListen != "" {
		g.inbox = &inbox.Inbox{Dir: cfg.Path(cfg.Dev.InboxDir), Logger: log}
	}
	return g, nil
}

func (g *Gateway) tlsConfig() (*tls.Config, error) {
	s := g.cfg.SMTP
	switch {
	case s.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(g.cfg.Path(s.TLSCert), g.cfg.Path(s.TLSKey))
		if err != nil {
			return nil, fmt.Errorf("smtp.tls_cert: %v", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
	case s.TLSSelfSigned:
		cert, err := certs.SelfSigned(g.cfg.Hostname)
		if err != nil {
			return nil, err
		}
		g.log.Warn("STARTTLS uses a self-signed certificate made at start-up; set smtp.tls_cert and smtp.tls_key for a real MX")
		return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
	}
	return nil, nil
}

func (g *Gateway) srs() (*srs.Rewriter, error) {
	s := g.cfg.SRS
	secrets := append([]string(nil), s.Secrets...)
	if s.SecretsFile != "" {
		b, err := os.ReadFile(g.cfg.Path(s.SecretsFile))
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

// keys loads every DKIM key, reporting each unreadable one at its own
// line; ok is false if any failed.
func (g *Gateway) keys(fail func(path, format string, args ...any)) (keys []dkim.Key, ok bool) {
	ok = true
	for i, k := range g.cfg.DKIM.Keys {
		signer, err := dkim.LoadKey(g.cfg.Path(k.File))
		if err != nil {
			fail(fmt.Sprintf("dkim.key.%d.file", i), "dkim.key[%d]: %v", i, err)
			ok = false
			continue
		}
		keys = append(keys, dkim.Key{Selector: k.Selector, Signer: signer})
	}
	return keys, ok
}

// sealConfig picks the key that seals ARC sets: the configured selector,
// or the first RSA key, since every ARC verifier supports rsa-sha256.
func (g *Gateway) sealConfig(keys []dkim.Key) *arc.SealConfig {
	a := g.cfg.ARC
	if (a.Seal != nil && !*a.Seal) || !g.cfg.AuthEnabled() || len(keys) == 0 {
		return nil
	}
	pick := -1
	for i, k := range keys {
		if a.Selector != "" && k.Selector == a.Selector {
			pick = i
			break
		}
		if _, isRSA := k.Signer.(*rsa.PrivateKey); a.Selector == "" && isRSA && pick < 0 {
			pick = i
		}
	}
	if pick < 0 {
		pick = 0
	}
	return &arc.SealConfig{Domain: g.cfg.DKIM.Domain, Selector: keys[pick].Selector, Key: keys[pick].Signer}
}

func (g *Gateway) cacheDir() string {
	if d := g.cfg.WASM.CacheDir; d != "" {
		return g.cfg.Path(d)
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "sluice", "wazero")
	}
	return ""
}

// buildChain loads every [[plugin]] of cfg into a new chain. On failure it
// closes what it loaded and reports each plugin's error at its line; a
// plugin that may be skipped is left out instead, unless g.strict.
func (g *Gateway) buildChain(ctx context.Context, cfg *config.Config) (*plugin.Chain, config.Errors) {
	var errs config.Errors
	var plugins []*plugin.Plugin
	var missing []plugin.Missing
	for i := range cfg.Plugin {
		p, err := g.loadPlugin(ctx, cfg, i)
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
	return plugin.Missing{Name: p.Name, Stages: stages}
}

func (g *Gateway) loadPlugin(ctx context.Context, cfg *config.Config, i int) (*plugin.Plugin, error) {
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
		Name:         p.Name,
		Path:         cfg.Path(p.Path),
		Stages:       stages,
		Config:       raw,
		Hostname:     cfg.Hostname,
		Domains:      cfg.Domains,
		Timeout:      p.Timeout.D(),
		MemoryLimit:  uint64(p.MemoryLimit),
		Instances:    p.Instances,
		Capabilities: p.Granted(),
		OnFailure:    policy,
	})
}

func (g *Gateway) relayConfig() relay.Config {
	r := g.cfg.Relay
	c := relay.Config{
		Helo:           r.Helo,
		Port:           r.Port,
		DisableIPv6:    r.IPv6 != nil && !*r.IPv6,
		ConnectTimeout: r.ConnectTimeout.D(),
		CommandTimeout: r.CommandTimeout.D(),
		DataTimeout:    r.DataTimeout.D(),
		IdleTimeout:    r.IdleTimeout.D(),
		Logger:         g.log,
		Observe:        g.metrics.relayStep,
	}
	if r.MaxIdle != nil {
		c.MaxIdle = *r.MaxIdle
		if c.MaxIdle == 0 {
			c.MaxIdle = -1 // relay reads 0 as "default"; the config's 0 means "keep none"
		}
	}
	c.SourceIPv4, _ = netip.ParseAddr(r.SourceIPv4) // validated by config
	c.SourceIPv6, _ = netip.ParseAddr(r.SourceIPv6)
	return c
}

// Listen opens every configured listener. An address whose IP is IPv6
// listens on IPv6 only, so that "[::]:25" and "0.0.0.0:25" can be
// configured side by side.
func (g *Gateway) Listen() error {
	for _, a := range g.cfg.SMTP.Listen {
		l, err := listen(a)
		if err != nil {
			g.closeListeners()
			return err
		}
		g.listeners = append(g.listeners, l)
		g.addrs = append(g.addrs, l.Addr().String())
	}
	if g.inbox != nil {
		l, err := listen(g.cfg.Dev.InboxListen)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("dev inbox: %w", err)
		}
		g.listeners = append(g.listeners, l)
	}
	if a := g.cfg.AdminListen(); a != "" {
		l, err := listen(a)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("admin listener: %w", err)
		}
		g.admin = l
	}
	return nil
}

func listen(addr string) (net.Listener, error) {
	host, _, _ := net.SplitHostPort(addr)
	network := "tcp"
	if ip, err := netip.ParseAddr(host); err == nil {
		network = "tcp4"
		if ip.Is6() && !ip.Is4In6() {
			network = "tcp6"
		}
	}
	return net.Listen(network, addr)
}

// Addrs returns the SMTP listeners' addresses (useful with port 0).
func (g *Gateway) Addrs() []string { return g.addrs }

// AdminAddr returns the admin listener's address, or "" if there is none.
func (g *Gateway) AdminAddr() string {
	if g.admin == nil {
		return ""
	}
	return g.admin.Addr().String()
}

// Serve serves on every listener until ctx is done, then shuts down,
// giving sessions in flight up to grace to finish. Meanwhile it reloads the
// filter chain when gateway.toml or a plugin's file changes.
func (g *Gateway) Serve(ctx context.Context, grace time.Duration) error {
	errc := make(chan error, len(g.listeners))
	n := len(g.cfg.SMTP.Listen)
	for i, l := range g.listeners {
		if i < n {
			go func() { errc <- g.smtp.Serve(l) }()
			g.log.Info("listening", "addr", l.Addr().String(), "hostname", g.cfg.Hostname)
		} else {
			go func() { errc <- g.inbox.Serve(l) }()
			g.log.Info("dev inbox listening", "addr", l.Addr().String(), "dir", g.inbox.Dir)
		}
	}
	var admin *http.Server
	if g.admin != nil {
		admin = g.adminServer()
		go func() {
			if err := admin.Serve(g.admin); !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("admin listener", "err", err)
			}
		}()
		g.log.Info("admin listening", "addr", g.admin.Addr().String())
		if ip, err := netip.ParseAddrPort(g.admin.Addr().String()); err == nil && !ip.Addr().IsLoopback() {
			g.log.Warn("the admin listener is not on loopback and has no authentication: anyone who reaches it can reload the chain", "addr", g.admin.Addr().String())
		}
	}
	watchCtx, stopWatching := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		g.watch(watchCtx, g.watchInterval())
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stopWatching()
	<-watched
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	g.smtp.Shutdown(sctx)
	if admin != nil {
		admin.Shutdown(sctx)
	}
	g.Close()
	return err
}

func (g *Gateway) closeListeners() {
	for _, l := range g.listeners {
		l.Close()
	}
	if g.admin != nil {
		g.admin.Close()
	}
}

// Close releases everything the gateway holds. A reload in progress
// finishes first; none start after.
func (g *Gateway) Close() error {
	g.reloadMu.Lock()
	g.closed = true
	g.reloadMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closeListeners()
	var errs []error
	if g.inbox != nil {
		g.inbox.Close()
	}
	if g.relay != nil {
		errs = append(errs, g.relay.Close())
	}
	ctx := context.Background()
	if g.chains != nil {
		// The chain closes now, or when the last session using it ends.
		g.chains.Close()
	}
	if g.host != nil {
		errs = append(errs, g.host.Close(ctx))
		g.host = nil
	}
	return errors.Join(errs...)
}
