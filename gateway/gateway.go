// Package gateway builds a running Sluice from a validated configuration:
// the resolver, SRS, DKIM signer, relay, plugin chain and SMTP server, and
// the dev-mode capture inbox. It is the only place that knows how the
// parts fit together; each part knows only its own settings.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/acmecert"
	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/admin"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/inbox"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
	"github.com/sluice-mail/sluice/gateway/internal/rediskv"
	"github.com/sluice-mail/sluice/gateway/internal/reports"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/smtpd"
)

// Gateway is a built Sluice, ready to listen.
type Gateway struct {
	// cfg is the configuration as started. What a reload applies goes
	// into a new generation of parts (gens); the rest, such as the
	// listeners, stays as cfg has it until the next start (reload.go).
	cfg   *config.Config
	log   *slog.Logger
	level *slog.LevelVar // nil: the log level does not reload
	host  *plugin.Host
	// dns is the first generation's resolver; every later one shares its
	// cache.
	dns  *resolver.Resolver
	gens *smtpd.Generations
	smtp *smtpd.Server
	// submission is the message submission service ([submission]),
	// sharing the MX's generations; nil when it has no listener.
	submission *smtpd.Server
	inbox      *inbox.Inbox
	metrics    *gatewayMetrics
	// queue is the process's queue, opened by Listen (nil before, and
	// in sluice check: another gateway may hold it).
	queue *queue.Queue
	// activity is the console's store, opened by Listen when
	// [console] is on; nil otherwise.
	activity *activity.Store
	// stsCache holds destinations' MTA-STS policies across generations:
	// a reload must not forget a policy (RFC 8461 §5.1).
	stsCache *mtasts.Cache
	// strict counts every plugin that fails to load as an error, whatever
	// its on_failure (sluice check).
	strict bool
	// acme gets the certificates when [tls] acme is on; nil otherwise.
	acme *acmecert.Manager
	// redisKV is the plugins' key-value store in Redis ([cluster] redis),
	// made at start and shared by every generation; nil: in memory.
	redisKV *rediskv.KV
	// kv is the one key-value store of the process, redisKV or in
	// memory: the plugins' and the submission logins' failure counters,
	// so that throttling holds across the nodes of a cluster.
	kv plugin.KV
	// site is what the HTTPS listener serves, from the configuration in use.
	site atomic.Pointer[site]
	// reports are the DMARC and TLS reports ([reports]); nil when off.
	// Started by Serve, which sets reportsQueue to the queue, once.
	reports      *reports.Reports
	reportsQueue queue.Enqueuer

	reloadMu sync.Mutex // one reload at a time
	closed   bool       // under reloadMu: no more reloads
	// sources are the outbound addresses in use, under reloadMu: a
	// reload that changes them checks their DNS again (checkIdentity).
	sources []config.Source
	seenMu  sync.Mutex
	seen    map[string]stamp // the files the last load read, as it found them

	mu        sync.Mutex
	listeners []net.Listener
	addrs     []string
	// The submission listeners: STARTTLS (587) and implicit TLS (465).
	submissionListeners    []net.Listener
	submissionTLSListeners []net.Listener
	admin                  net.Listener // nil: no admin listener
	https                  []net.Listener
}

// New builds every part. Problems that only show when building (a key file
// that cannot be read, a plugin that does not load) come back as
// config.Errors pointing at the line of the setting concerned. A plugin
// whose on_failure is "skip" and that fails to load is left out of the
// chain, logged and counted, as its failures at run time would be.
// level is the level log's handler reads, which a reload sets from
// [log] level; nil if it has none.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, level *slog.LevelVar) (*Gateway, error) {
	return build(ctx, cfg, log, level, false)
}

// Check builds every part as New does, then releases it. Every plugin that
// fails to load is an error here, whatever its on_failure: a check is how
// an operator finds out before mail does.
func Check(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	_, err := CheckChain(ctx, cfg, log)
	return err
}

// CheckChain is Check, and also describes the plugins it loaded, each
// once with the services it runs in: what `sluice check` prints.
func CheckChain(ctx context.Context, cfg *config.Config, log *slog.Logger) (admin.Chain, error) {
	g, err := build(ctx, cfg, log, nil, true)
	if err != nil {
		return admin.Chain{}, err
	}
	chain := g.chainInfo()
	return chain, g.Close()
}

func build(ctx context.Context, cfg *config.Config, log *slog.Logger, level *slog.LevelVar, strict bool) (*Gateway, error) {
	g := &Gateway{cfg: cfg, log: log, level: level, metrics: newGatewayMetrics(), strict: strict,
		stsCache: mtasts.NewCache()}
	var err error
	hc := plugin.HostConfig{CacheDir: g.cacheDir(), Logger: log, Counters: newPluginCounters(g.metrics.registry)}
	if err := checkActivity(cfg); err != nil {
		return nil, config.Errors{err}
	}
	kv, kvErr := g.newRedisKV(cfg)
	if kvErr != nil {
		return nil, config.Errors{kvErr}
	}
	if kv != nil {
		g.redisKV, g.kv = kv, kv
		log.Info("the plugins' key-value store is in Redis, shared with the other nodes", "redis", cfg.Cluster.Redis,
			"sentinel_master", cfg.Cluster.RedisSentinelMaster, "key_prefix", cfg.Cluster.RedisKeyPrefix)
	} else {
		g.kv = plugin.NewMemoryKV(plugin.MemoryKVConfig{})
	}
	hc.KV = g.kv
	g.host, err = plugin.NewHost(ctx, hc)
	if err != nil {
		if kv != nil {
			kv.Close()
		}
		return nil, fmt.Errorf("starting the WebAssembly runtime: %w", err)
	}
	g.seen = stampFiles(cfg)
	if cfg.TLS.ACME {
		if g.acme, err = g.newACME(cfg); err != nil {
			g.Close()
			return nil, config.Errors{err.(*config.Error)}
		}
	}
	g.reports = g.newReports(cfg)
	parts, errs := g.buildParts(ctx, cfg)
	if len(errs) > 0 {
		g.Close()
		return nil, errs
	}
	g.gens, err = smtpd.NewGenerations(parts, log)
	if err != nil {
		parts.Chain.Close(ctx)
		parts.SubmissionChain.Close(ctx)
		parts.Relay.Close()
		g.Close()
		return nil, err
	}
	g.metrics.generation.Set(1)
	g.applied(cfg, parts.TLS)
	if !strict {
		g.sources = cfg.Relay.Sources
		g.checkIdentity(parts.DNS, cfg)
	}
	g.smtp, err = smtpd.New(g.smtpdConfig(cfg, parts), g.gens)
	if err == nil && cfg.Submission.Enabled() {
		sc := g.smtpdConfig(cfg, parts)
		sc.Submission, sc.HideClient = true, cfg.Submission.HideClient
		g.submission, err = smtpd.New(sc, g.gens)
	}
	if err != nil {
		g.Close()
		return nil, err
	}
	if cfg.Dev.InboxListen != "" {
		g.inbox = &inbox.Inbox{Dir: cfg.Path(cfg.Dev.InboxDir), Logger: log}
	}
	return g, nil
}

// smtpdConfig is the SMTP server's configuration: the MX's, which the
// submission service shares but for its own turns.
func (g *Gateway) smtpdConfig(cfg *config.Config, parts smtpd.Parts) smtpd.Config {
	return smtpd.Config{
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
		STARTTLS:            parts.TLS != nil,

		RejectBareLineEndings: cfg.SMTP.BareLineEndings == "reject",
		DMARCReports:          g.reports,
		QueueAll:              cfg.Queue.MultipleDestinations == "queue_all",
		RecordSubject:         cfg.ConsoleRecordSubject(),
		Node:                  cfg.Cluster.Node,

		Logger:  g.log,
		Metrics: g.metrics.registry,
	}
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

// listenAll opens a listener on each of addrs, adding each to *ls as it
// opens (so that closeListeners closes them after a later failure); what
// names them in an error, "" for the SMTP listeners.
func listenAll(ls *[]net.Listener, addrs []string, what string) error {
	for _, a := range addrs {
		l, err := listen(a)
		if err != nil {
			if what != "" {
				err = fmt.Errorf("%s: %w", what, err)
			}
			return err
		}
		*ls = append(*ls, l)
	}
	return nil
}

// Listen opens every configured listener. An address whose IP is IPv6
// listens on IPv6 only, so that "[::]:25" and "0.0.0.0:25" can be
// configured side by side.
func (g *Gateway) Listen() error {
	if err := listenAll(&g.listeners, g.cfg.SMTP.Listen, ""); err != nil {
		g.closeListeners()
		return err
	}
	for _, l := range g.listeners {
		g.addrs = append(g.addrs, l.Addr().String())
	}
	if g.submission != nil {
		if err := listenAll(&g.submissionListeners, g.cfg.Submission.Listen, "submission listener"); err != nil {
			g.closeListeners()
			return err
		}
		if err := listenAll(&g.submissionTLSListeners, g.cfg.Submission.ListenTLS, "submission listener"); err != nil {
			g.closeListeners()
			return err
		}
	}
	if g.inbox != nil {
		l, err := listen(g.cfg.Dev.InboxListen)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("dev inbox: %w", err)
		}
		g.listeners = append(g.listeners, l)
	}
	if err := listenAll(&g.https, g.cfg.HTTPS.Listen, "https listener"); err != nil {
		g.closeListeners()
		return err
	}
	if a := g.cfg.AdminListen(); a != "" {
		l, err := listen(a)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("admin listener: %w", err)
		}
		g.admin = l
	}
	if err := g.openQueue(); err != nil {
		g.closeListeners()
		return err
	}
	if err := g.openActivity(); err != nil {
		g.closeListeners()
		return err
	}
	return nil
}

// adminListener is what the admin server serves on: l itself, plain
// HTTP, on loopback; off it, l with TLS and the STARTTLS certificate,
// since passwords and session cookies would cross the network.
func (g *Gateway) adminListener(l net.Listener, loopback bool) (net.Listener, error) {
	if loopback {
		return l, nil
	}
	if !starttls(g.cfg) {
		return nil, fmt.Errorf("admin listener %s is not on loopback, so it serves HTTPS with the STARTTLS certificate: set smtp.tls_cert and smtp.tls_key, tls.acme or smtp.tls_self_signed, or listen on loopback", l.Addr())
	}
	if !g.cfg.Console.Enabled {
		g.log.Warn("the admin listener is not on loopback and has no login: anyone who reaches it can reload the configuration; turn on [console] for a login", "addr", l.Addr().String())
	}
	return tls.NewListener(l, &tls.Config{NextProtos: []string{"http/1.1"}, GetConfigForClient: g.generationTLS}), nil
}

// adminOnLoopback reports whether the admin listener is on a loopback
// address, where it serves plain HTTP.
func adminOnLoopback(l net.Listener) bool {
	ap, err := netip.ParseAddrPort(l.Addr().String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
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

// SubmissionAddrs returns the submission listeners' addresses: those
// with STARTTLS, then those with implicit TLS.
func (g *Gateway) SubmissionAddrs() (starttls, implicitTLS []string) {
	for _, l := range g.submissionListeners {
		starttls = append(starttls, l.Addr().String())
	}
	for _, l := range g.submissionTLSListeners {
		implicitTLS = append(implicitTLS, l.Addr().String())
	}
	return starttls, implicitTLS
}

// HTTPSAddrs returns the HTTPS listeners' addresses.
func (g *Gateway) HTTPSAddrs() []string {
	var addrs []string
	for _, l := range g.https {
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// AdminAddr returns the admin listener's address, or "" if there is none.
func (g *Gateway) AdminAddr() string {
	if g.admin == nil {
		return ""
	}
	return g.admin.Addr().String()
}

// Serve serves on every listener until ctx is done, then shuts down,
// giving sessions in flight up to grace to finish. Meanwhile it reloads
// when gateway.toml or a file it names (plugin, key, certificate, SRS
// secrets) changes.
func (g *Gateway) Serve(ctx context.Context, grace time.Duration) error {
	// The admin listener first: a mistake in its settings stops the start
	// before any mail is taken.
	var admin *http.Server
	var adminL net.Listener
	if g.admin != nil {
		var err error
		if admin, err = g.adminServer(); err == nil {
			adminL, err = g.adminListener(g.admin, adminOnLoopback(g.admin))
		}
		if err != nil {
			g.Close()
			return err
		}
	}
	g.checkRedis(ctx)
	errc := make(chan error, len(g.listeners)+len(g.submissionListeners)+len(g.submissionTLSListeners))
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
	for _, l := range g.submissionListeners {
		go func() { errc <- g.submission.Serve(l) }()
		g.log.Info("submission listening", "addr", l.Addr().String(), "tls", "starttls")
	}
	for _, l := range g.submissionTLSListeners {
		go func() { errc <- g.submission.ServeTLS(l) }()
		g.log.Info("submission listening", "addr", l.Addr().String(), "tls", "implicit")
	}
	if g.admin != nil {
		go func() {
			if err := admin.Serve(adminL); !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("admin listener", "err", err)
			}
		}()
		scheme := "http"
		if adminL != g.admin {
			scheme = "https"
		}
		g.log.Info("admin listening", "addr", g.admin.Addr().String(), "scheme", scheme)
	}
	var https *http.Server
	if len(g.https) > 0 {
		https = g.httpsServer()
		tlsConfig := g.httpsTLS()
		for _, l := range g.https {
			go func() {
				if err := https.Serve(tls.NewListener(l, tlsConfig)); !errors.Is(err, http.ErrServerClosed) {
					g.log.Error("https listener", "err", err)
				}
			}()
			g.log.Info("https listening", "addr", l.Addr().String())
		}
	}
	watchCtx, stopWatching := context.WithCancel(ctx)
	if g.acme != nil {
		// In the background: mail flows meanwhile, STARTTLS with a
		// stand-in certificate. Not waited for at shutdown: once Close
		// is called its next request to the CA fails, and it returns.
		go g.acme.Run(watchCtx)
	}
	// Its own context: it records what the sessions finishing below do.
	if err := g.startReports(context.Background()); err != nil {
		g.log.Error("DMARC and TLS reports not started", "err", err)
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		g.watch(watchCtx, g.watchInterval())
	}()
	queueCtx, stopQueue := context.WithCancel(context.Background())
	queueDone := make(chan struct{})
	go func() {
		defer close(queueDone)
		if g.queue != nil {
			g.runQueue(queueCtx)
		}
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
	g.shutdownSMTP(sctx)
	g.reports.Close()
	// After the sessions, which may still queue mail: deliveries under
	// way are cancelled, and their messages tried again at the next start.
	stopQueue()
	<-queueDone
	if admin != nil {
		admin.Shutdown(sctx)
	}
	if https != nil {
		https.Shutdown(sctx)
	}
	g.Close()
	return err
}

// shutdownSMTP shuts the MX and the submission service down together,
// each giving its sessions until ctx is done.
func (g *Gateway) shutdownSMTP(ctx context.Context) {
	var wg sync.WaitGroup
	if g.submission != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.submission.Shutdown(ctx)
		}()
	}
	g.smtp.Shutdown(ctx)
	wg.Wait()
}

func (g *Gateway) closeListeners() {
	for _, l := range g.listeners {
		l.Close()
	}
	for _, l := range append(g.submissionListeners, g.submissionTLSListeners...) {
		l.Close()
	}
	if g.admin != nil {
		g.admin.Close()
	}
	for _, l := range g.https {
		l.Close()
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
	if g.acme != nil {
		g.acme.Close()
	}
	if g.inbox != nil {
		g.inbox.Close()
	}
	ctx := context.Background()
	if g.gens != nil {
		// The parts close now, or when the last session using them ends.
		g.gens.Close()
	}
	if g.host != nil {
		errs = append(errs, g.host.Close(ctx))
		g.host = nil
	}
	if g.redisKV != nil {
		// After the host: no plugin calls it any more.
		g.redisKV.Close()
		g.redisKV = nil
	}
	if g.queue != nil {
		errs = append(errs, g.queue.Close())
		g.queue = nil
	}
	if g.activity != nil {
		// After the sessions (Serve shut them down): their records are
		// written before the store closes.
		errs = append(errs, g.activity.Close())
		g.activity = nil
	}
	return errors.Join(errs...)
}
