package gateway

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/admin"
	"github.com/sluice-mail/sluice/gateway/internal/buildinfo"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/login"
	"github.com/sluice-mail/sluice/gateway/internal/metrics"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
	"github.com/sluice-mail/sluice/gateway/internal/rediskv"
	"github.com/sluice-mail/sluice/gateway/internal/submission"
)

// defaultWatchInterval is how often gateway.toml and the plugin files are
// checked for changes when [admin] watch_interval is not set.
const defaultWatchInterval = 2 * time.Second

// gatewayMetrics are the metrics of the gateway as a whole; the parts
// register their own on the same registry.
type gatewayMetrics struct {
	registry     *prometheus.Registry
	reloads      *prometheus.CounterVec
	generation   prometheus.Gauge
	loadFailures *prometheus.CounterVec
	relaySeconds *prometheus.HistogramVec
	// relayStepsBy are relaySeconds' children by step, found without the
	// vector's lookup (hashing, a lock) at every step of every message.
	relayStepsBy map[string]prometheus.Observer
	tlsPolicy    *prometheus.CounterVec
	certExpiry   *prometheus.GaugeVec
	acmeFailures *prometheus.CounterVec
	stsFetches   *prometheus.CounterVec
	stsNotWaited prometheus.Counter
	queue        *queue.Metrics      // read the queue once Listen opened it
	activity     *activity.Metrics   // read the console's store once Listen opened it
	redisKV      *rediskv.Metrics    // the key-value store's calls to Redis, when [cluster] has it
	submission   *submission.Metrics // logins to the submission service, shared by every generation's users
	// reportsDropped and reportsSent are the DMARC and TLS reports'.
	reportsDropped *prometheus.CounterVec
	reportsSent    *prometheus.CounterVec
	dsn            *prometheus.CounterVec
}

// BuildInfo is the running binary's build information, with what makes
// its RSA signatures: sluice_build_info, `sluice version` and the log line
// serve starts with show it.
func BuildInfo() buildinfo.Info {
	b := buildinfo.Read()
	b.RSASigner = dkim.RSABackend()
	return b
}

func newGatewayMetrics() *gatewayMetrics {
	r := metrics.NewRegistry(BuildInfo())
	f := promauto.With(r)
	m := &gatewayMetrics{
		registry: r,
		reloads: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_reloads_total",
			Help: "Reloads of the configuration, by result: ok (the new generation serves) or failed (the old one still does)."}, []string{"result"}),
		generation: f.NewGauge(prometheus.GaugeOpts{Name: "sluice_config_generation",
			Help: "The generation of the configuration in use (chain, keys, certificate, settings): 1 at start, one more for each successful reload."}),
		loadFailures: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_plugin_load_failures_total",
			Help: "Plugins left out of a new chain because they failed to load and their on_failure is skip."}, []string{"plugin"}),
		relaySeconds: f.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_relay_seconds",
			Help:    "Time each step with a destination took, failed ones included: connect (TCP, greeting, EHLO, STARTTLS), mail (MAIL FROM and the first RCPT TO), rcpt (each later RCPT TO), data (DATA to the reply to the end of data).",
			Buckets: metrics.DefaultBuckets}, []string{"step"}),
		certExpiry: f.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate in use for each name expires (Unix time): the hostname's for STARTTLS, from smtp.tls_cert or ACME, and with ACME each mta-sts name's."}, []string{"name"}),
		acmeFailures: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_acme_failures_total",
			Help: "Failed attempts to get a certificate from the ACME CA, by name, and checks (every 30 minutes) that found a renewal overdue."}, []string{"name"}),
		tlsPolicy: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_relay_tls_policy_total",
			Help: "TLS checks of transactions with destinations under a policy, by policy and mode: tls_security encrypt or verify, a domain's mta-sts policy in enforce or testing mode, a host's dane TLSA records (verify: usable records, encrypt: only unusable ones), requiretls verify for a message that asks for REQUIRETLS; and by result, ok or what failed as TLS reporting (RFC 8460) names it."},
			[]string{"policy", "mode", "result"}),
		stsFetches: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_relay_mta_sts_fetches_total",
			Help: "Fetches of destinations' MTA-STS policies, by result: ok or failed."}, []string{"result"}),
		stsNotWaited: f.NewCounter(prometheus.CounterOpts{Name: "sluice_relay_mta_sts_not_waited_total",
			Help: "Transactions that stopped waiting for a destination's first MTA-STS lookup (their context ended first) and went on without a policy, as tls_security says; the lookup goes on and its policy is cached."}),
	}
	m.reportsDropped = f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_reports_records_dropped_total",
		Help: "Records for the DMARC aggregate (dmarc) and TLS (tls) reports dropped because the writer fell behind: the mail went on, the report counts less."}, []string{"kind"})
	m.reportsSent = f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_reports_sent_total",
		Help: "DMARC aggregate (dmarc) and TLS (tls) reports queued, one per report and destination domain."}, []string{"kind"})
	for _, kind := range []string{"dmarc", "tls"} {
		m.reportsDropped.WithLabelValues(kind)
		m.reportsSent.WithLabelValues(kind)
	}
	for _, pm := range [][2]string{{"tls_security", "encrypt"}, {"tls_security", "verify"}, {"mta-sts", "enforce"}, {"mta-sts", "testing"},
		{"dane", "verify"}, {"dane", "encrypt"}, {"requiretls", "verify"}} {
		m.tlsPolicy.WithLabelValues(pm[0], pm[1], "ok")
	}
	m.stsFetches.WithLabelValues("ok")
	m.stsFetches.WithLabelValues("failed")
	m.queue = queue.NewMetrics(r)
	m.activity = activity.NewMetrics(r)
	m.redisKV = rediskv.NewMetrics(r)
	m.submission = submission.NewMetrics(r)
	m.dsn = newDSNCounter(r)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	m.relayStepsBy = make(map[string]prometheus.Observer)
	for _, step := range []string{"connect", "mail", "rcpt", "data"} {
		m.relayStepsBy[step] = m.relaySeconds.WithLabelValues(step)
	}
	return m
}

// relayStep records how long a step with a destination took.
func (m *gatewayMetrics) relayStep(step string, took time.Duration) {
	if o, ok := m.relayStepsBy[step]; ok {
		o.Observe(took.Seconds())
		return
	}
	m.relaySeconds.WithLabelValues(step).Observe(took.Seconds())
}

// tlsResult counts a TLS check of a destination connection under a policy.
func (m *gatewayMetrics) tlsResult(policy, mode, result string) {
	m.tlsPolicy.WithLabelValues(policy, mode, result).Inc()
}

// stsFetched counts a fetch of a destination's MTA-STS policy.
func (m *gatewayMetrics) stsFetched(err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.stsFetches.WithLabelValues(result).Inc()
}

var errClosed = errors.New("the gateway is shut down")

// Reload reads gateway.toml again and builds a new generation from it:
// the filter chain (every plugin compiled, started and configured), the
// DKIM keys, signer and ARC sealer, SRS and its secrets, the STARTTLS
// certificate, the checks, [scoring], [dns], [relay], and the log level;
// then the MTA-STS policy served, and the names ACME gets certificates for.
// Only once all of it is built does it replace the current generation, at
// once. Sessions in flight finish on the generation they started with;
// new sessions get the new one. If anything fails, the old generation
// keeps serving and the error says what, as "file:line: problem" lines.
// Settings bound to the listeners or the process (restartOnly) keep their
// running values: once the new generation is in, a warning names each one
// that changed, and they take effect at the next start.
func (g *Gateway) Reload(ctx context.Context) error {
	_, err := g.reloadReporting(ctx)
	return err
}

// reloadReporting is Reload, returning also the dotted keys of the
// settings that changed but were not applied, for POST /admin/reload to
// show.
func (g *Gateway) reloadReporting(ctx context.Context) (notApplied []string, err error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.closed {
		return nil, errClosed
	}
	start := time.Now()
	kept, err := g.reload(ctx)
	if err != nil {
		g.metrics.reloads.WithLabelValues("failed").Inc()
		g.log.Error("reload failed; the previous generation keeps serving", "err", err)
		return nil, err
	}
	g.metrics.reloads.WithLabelValues("ok").Inc()
	chain := g.chainInfo()
	var plugins []string
	for _, p := range chain.Plugins {
		plugins = append(plugins, p.Name+"="+p.SHA256[:12])
	}
	g.log.Info("configuration reloaded", "generation", chain.Generation, "plugins", strings.Join(plugins, ","),
		"ms", time.Since(start).Milliseconds())
	if len(kept) > 0 {
		g.log.Warn("settings changed that a reload does not apply; they keep their running values until the next start",
			"settings", strings.Join(kept, ","))
	}
	return kept, nil
}

// reload builds the new generation and swaps it in. It returns the
// settings that changed and were kept at their running values.
func (g *Gateway) reload(ctx context.Context) ([]string, error) {
	// Files are stamped before they are read, so that a change made while
	// loading is seen by the next check.
	cfgStamp := stampOf(g.cfg.File)
	cfg, err := config.Load(g.cfg.File)
	if err != nil {
		g.remember(g.cfg.File, cfgStamp, nil)
		return nil, err
	}
	g.remember(g.cfg.File, cfgStamp, stampFiles(cfg))
	cfg, kept := keepRestartOnly(g.cfg, cfg)
	parts, errs := g.buildParts(ctx, cfg)
	if errs != nil {
		return nil, errs
	}
	n, err := g.gens.Swap(parts)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errClosed
	}
	g.metrics.generation.Set(float64(n))
	g.applied(cfg, parts.TLS)
	g.setLevel(cfg.Log.Level)
	if !sameSources(g.sources, cfg.Relay.Sources) {
		g.sources = cfg.Relay.Sources
		g.checkIdentity(parts.DNS, cfg)
	}
	return kept, nil
}

// setLevel makes the logger log at level from now on.
func (g *Gateway) setLevel(level string) {
	var l slog.Level
	if g.level != nil && l.UnmarshalText([]byte(level)) == nil { // validated by config
		g.level.Set(l)
	}
}

// reloadable are the settings a reload applies, by section or dotted
// key: those built into a generation (buildParts). Naming what reloads,
// rather than what does not, means that a setting added later is reported
// as not applied until it is made to reload, never silently ignored.
var reloadable = []string{
	"plugin", "dkim", "arc", "auth", "dns", "relay", "scoring", "log.level",
	// The submission service's users and their throttling (Parts.Logins);
	// its listeners and hide_client are the server's, for its life.
	"submission.user", "submission.max_failures_per_ip", "submission.max_failures_per_user", "submission.failure_window",
	"srs.secrets", "srs.secrets_file", "srs.max_age_days", "srs.hash_length",
	"mta_sts", "records",
}

// tlsSettings reload while STARTTLS stays on (or off): whether the server
// offers it is fixed for its life, the certificate is not.
var tlsSettings = []string{"smtp.tls_cert", "smtp.tls_key", "smtp.tls_self_signed"}

// keepRestartOnly returns loaded with every setting a reload does not
// apply put back to its running value, and the dotted keys of those that
// differed. Everything built from the result is then consistent with what
// the listeners and the process still run with.
func keepRestartOnly(running, loaded *config.Config) (*config.Config, []string) {
	out := *loaded
	// [tls] is restart-only: while ACME is on (or off), so is where
	// STARTTLS's certificate comes from.
	tlsStays := starttls(running) == starttls(loaded) && running.TLS.ACME == loaded.TLS.ACME
	var kept []string
	eachSetting(reflect.ValueOf(running).Elem(), reflect.ValueOf(&out).Elem(), "", func(key string, run, cur reflect.Value) {
		if reflect.DeepEqual(run.Interface(), cur.Interface()) || applies(key, tlsStays) {
			return
		}
		cur.Set(run)
		kept = append(kept, key)
	})
	return &out, kept
}

func applies(key string, tlsStays bool) bool {
	if slices.Contains(tlsSettings, key) {
		return tlsStays
	}
	for _, r := range reloadable {
		if key == r || strings.HasPrefix(key, r+".") {
			return true
		}
	}
	return false
}

// eachSetting calls fn with the dotted key of every setting of two
// configurations: the top-level ones, and those of each section.
func eachSetting(a, b reflect.Value, prefix string, fn func(key string, a, b reflect.Value)) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && prefix == "" {
			eachSetting(a.Field(i), b.Field(i), name+".", fn)
			continue
		}
		fn(prefix+name, a.Field(i), b.Field(i))
	}
}

// stamp is what the watcher compares to see a file change: its
// modification time and size, or zero if it cannot be read.
type stamp struct {
	mtime int64
	size  int64
}

func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{fi.ModTime().UnixNano(), fi.Size()}
}

// stampFiles stamps the configuration file and every file it names that
// a generation reads: plugin modules, DKIM keys, the certificate and its
// key (which certbot renews in place), the SRS secrets file and the
// relay's CA file.
func stampFiles(cfg *config.Config) map[string]stamp {
	files := []string{cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, cfg.SRS.SecretsFile, cfg.Relay.TLSCAFile}
	for _, p := range cfg.Plugin {
		files = append(files, p.Path)
	}
	for _, k := range cfg.DKIM.Keys {
		files = append(files, k.File)
	}
	s := map[string]stamp{cfg.File: stampOf(cfg.File)}
	for _, f := range files {
		if f != "" {
			path := cfg.Path(f)
			s[path] = stampOf(path)
		}
	}
	return s
}

// remember records the files a reload read. plugins is nil when the
// configuration could not be read: the plugin files watched stay those of
// the last configuration that could.
func (g *Gateway) remember(cfgFile string, cfgStamp stamp, files map[string]stamp) {
	g.seenMu.Lock()
	defer g.seenMu.Unlock()
	if files == nil {
		files = map[string]stamp{}
		for path := range g.seen {
			files[path] = stampOf(path)
		}
	}
	files[cfgFile] = cfgStamp
	g.seen = files
}

func (g *Gateway) seenFiles() map[string]stamp {
	g.seenMu.Lock()
	defer g.seenMu.Unlock()
	return maps.Clone(g.seen)
}

func (g *Gateway) watchInterval() time.Duration {
	if d := g.cfg.Admin.WatchInterval.D(); d > 0 {
		return d
	}
	return defaultWatchInterval
}

// watch checks gateway.toml and the files it names every interval until ctx
// is done, and reloads when one changed. A change is acted on once the
// files have stayed the same for a whole interval, so that a module caught
// halfway through being copied is not loaded.
func (g *Gateway) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var pending map[string]stamp
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seen := g.seenFiles()
		now := map[string]stamp{}
		for path := range seen {
			now[path] = stampOf(path)
		}
		if maps.Equal(now, seen) {
			pending = nil
			continue
		}
		if !maps.Equal(now, pending) {
			pending = now
			continue
		}
		pending = nil
		var changed []string
		for path, st := range now {
			if seen[path] != st {
				changed = append(changed, path)
			}
		}
		slices.Sort(changed)
		g.log.Info("reloading: files changed", "files", strings.Join(changed, ","))
		g.Reload(ctx)
	}
}

// chainInfo describes the chain in use.
func (g *Gateway) chainInfo() admin.Chain {
	gen := g.gens.Acquire()
	if gen == nil {
		return admin.Chain{}
	}
	defer gen.Release()
	c := admin.Chain{Generation: gen.N, OpenGenerations: g.gens.Open(), Plugins: []admin.Plugin{}}
	for _, p := range gen.Chain.Loaded() { // every service's, each once
		i := p.Info()
		c.Plugins = append(c.Plugins, admin.Plugin{
			Name:         i.Name,
			Path:         i.Path,
			SHA256:       i.SHA256,
			ABIVersion:   i.ABIVersion,
			Stages:       admin.StageNames(i.Stages),
			Permissions:  admin.PermissionNames(i.Permissions),
			Capabilities: admin.CapabilityNames(i.Capabilities),
			Instances:    i.Instances,
			Services:     i.Services,
		})
	}
	return c
}

func (g *Gateway) adminServer() (*http.Server, error) {
	c := admin.Config{
		Metrics:      g.metrics.registry,
		Hosts:        []string{g.cfg.Hostname},
		Reload:       g.reloadOverHTTP,
		Chain:        g.chainInfo,
		Queue:        g.adminQueue(),
		MetricsToken: g.cfg.Admin.MetricsToken,
		Logger:       g.log,
	}
	if g.cfg.Console.Enabled {
		users := make([]login.User, 0, len(g.cfg.Console.Users))
		for _, u := range g.cfg.Console.Users {
			users = append(users, login.User{Name: u.Name, PasswordHash: u.PasswordHash})
		}
		l, err := login.New(login.Config{Users: users, Logger: g.log})
		if err != nil {
			return nil, err
		}
		c.Login = l
		if g.activity != nil { // opened by Listen, which comes first
			c.Console = g.consoleHandler(g.activity)
		}
	}
	return &http.Server{Handler: admin.Handler(c), ReadHeaderTimeout: 10 * time.Second}, nil
}

// adminQueue is the queue for the admin endpoints: a nil interface, not
// a nil *queue.Queue, when the gateway has none.
func (g *Gateway) adminQueue() admin.Queue {
	if g.queue == nil {
		return nil
	}
	return g.queue
}
