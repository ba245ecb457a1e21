package gateway

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-mail/sluice/gateway/internal/admin"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/metrics"
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
}

func newGatewayMetrics(b metrics.Build) *gatewayMetrics {
	r := metrics.NewRegistry(b)
	f := promauto.With(r)
	m := &gatewayMetrics{
		registry: r,
		reloads: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_reloads_total",
			Help: "Reloads of the filter chain, by result: ok (the new chain serves) or failed (the old one still does)."}, []string{"result"}),
		generation: f.NewGauge(prometheus.GaugeOpts{Name: "sluice_chain_generation",
			Help: "The filter chain in use: 1 at start, one more for each successful reload."}),
		loadFailures: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_plugin_load_failures_total",
			Help: "Plugins left out of a new chain because they failed to load and their on_failure is skip."}, []string{"plugin"}),
		relaySeconds: f.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_relay_seconds",
			Help:    "Time each step with a destination took, failed ones included: connect (TCP, greeting, EHLO, STARTTLS), mail (MAIL FROM and the first RCPT TO), rcpt (each later RCPT TO), data (DATA to the reply to the end of data).",
			Buckets: metrics.DefaultBuckets}, []string{"step"}),
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	for _, step := range []string{"connect", "mail", "rcpt", "data"} {
		m.relaySeconds.WithLabelValues(step)
	}
	return m
}

// relayStep records how long a step with a destination took.
func (m *gatewayMetrics) relayStep(step string, took time.Duration) {
	m.relaySeconds.WithLabelValues(step).Observe(took.Seconds())
}

var errClosed = errors.New("the gateway is shut down")

// Reload reads gateway.toml again and rebuilds the filter chain from its
// [[plugin]] tables: every plugin is compiled, started and configured
// before the new chain replaces the old one, at once. Sessions in flight
// finish on the chain they started with; new sessions get the new one.
// If anything fails, the old chain keeps serving and the error says what,
// as "file:line: problem" lines. Other settings that changed are not
// applied: a warning names them, and they take effect at the next start.
func (g *Gateway) Reload(ctx context.Context) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.closed {
		return errClosed
	}
	start := time.Now()
	err := g.reload(ctx)
	if err != nil {
		g.metrics.reloads.WithLabelValues("failed").Inc()
		g.log.Error("reload failed; the previous filter chain keeps serving", "err", err)
		return err
	}
	g.metrics.reloads.WithLabelValues("ok").Inc()
	chain := g.chainInfo()
	var plugins []string
	for _, p := range chain.Plugins {
		plugins = append(plugins, p.Name+"="+p.SHA256[:12])
	}
	g.log.Info("filter chain reloaded", "generation", chain.Generation, "plugins", strings.Join(plugins, ","),
		"ms", time.Since(start).Milliseconds())
	return nil
}

func (g *Gateway) reload(ctx context.Context) error {
	// Files are stamped before they are read, so that a change made while
	// loading is seen by the next check.
	cfgStamp := stampOf(g.cfg.File)
	cfg, err := config.Load(g.cfg.File)
	if err != nil {
		g.remember(g.cfg.File, cfgStamp, nil)
		return err
	}
	g.remember(g.cfg.File, cfgStamp, stampFiles(cfg))
	if changed := restartOnly(g.cfg, cfg); len(changed) > 0 {
		g.log.Warn("settings other than [[plugin]] changed in the configuration; they take effect at the next start",
			"sections", strings.Join(changed, ","))
	}
	chain, errs := g.buildChain(ctx, cfg)
	if errs != nil {
		return errs
	}
	n := g.chains.Swap(chain)
	g.metrics.generation.Set(float64(n))
	return nil
}

// restartOnly names the top-level settings, other than [[plugin]], that
// differ between two configurations.
func restartOnly(old, cur *config.Config) []string {
	a, b := reflect.ValueOf(old).Elem(), reflect.ValueOf(cur).Elem()
	var changed []string
	for i := range a.NumField() {
		f := a.Type().Field(i)
		if !f.IsExported() || f.Name == "Plugin" || f.Name == "File" {
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			changed = append(changed, name)
		}
	}
	return changed
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

// stampFiles stamps the configuration file and every plugin module it
// names.
func stampFiles(cfg *config.Config) map[string]stamp {
	s := map[string]stamp{cfg.File: stampOf(cfg.File)}
	for _, p := range cfg.Plugin {
		path := cfg.Path(p.Path)
		s[path] = stampOf(path)
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

// watch checks gateway.toml and the plugin files every interval until ctx
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
	gen := g.chains.Acquire()
	if gen == nil {
		return admin.Chain{}
	}
	defer gen.Release()
	c := admin.Chain{Generation: gen.N, OpenGenerations: g.chains.Open(), Plugins: []admin.Plugin{}}
	for _, p := range gen.Chain.Plugins() {
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
		})
	}
	return c
}

func (g *Gateway) adminServer() *http.Server {
	h := admin.Handler(admin.Config{
		Metrics: g.metrics.registry,
		Hosts:   []string{g.cfg.Hostname},
		Reload: func(ctx context.Context) error {
			g.log.Info("reloading: asked over HTTP")
			return g.Reload(ctx)
		},
		Chain:  g.chainInfo,
		Logger: g.log,
	})
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
}
