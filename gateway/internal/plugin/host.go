// Package plugin runs the gateway's filter plugins: WebAssembly modules
// (sdk/ABI.md) loaded with wazero, each with a pool of instances, called in
// order by a Chain at each stage of an SMTP session. Everything specific to
// wazero stays inside this package.
package plugin

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/plugin/interrupt"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// HostConfig configures a Host.
type HostConfig struct {
	// CacheDir keeps compiled modules between runs, which turns a load of
	// seconds into one of milliseconds; "" compiles in memory only.
	CacheDir string
	// Logger receives plugin failures and what plugins log; nil discards.
	Logger *slog.Logger

	// What the host functions of plugins use (hostfuncs.go).
	// Resolver answers dns_lookup; a plugin granted "dns" needs one.
	Resolver *resolver.Resolver
	// KV stores what plugins keep with kv_set; nil means a MemoryKV of
	// the default size. Give the same store to every Host of a gateway so
	// that what plugins stored survives a reload.
	KV KV
	// Counters receives what plugins count; nil drops it.
	Counters Counters
	// Walltime is the wall clock plugins read; nil is the system's. The
	// monotonic clock, which sleeps and timeouts use, is always the
	// system's.
	Walltime func() time.Time
}

// Host loads plugins. Its compilation cache is shared by all of them, so a
// module loaded twice is compiled once.
type Host struct {
	cache    wazero.CompilationCache
	logger   *slog.Logger
	resolver *resolver.Resolver
	kv       KV
	counters Counters
	walltime func() time.Time
}

// NewHost returns a host ready to load plugins.
func NewHost(ctx context.Context, c HostConfig) (*Host, error) {
	h := &Host{logger: c.Logger, resolver: c.Resolver, kv: c.KV, counters: c.Counters, walltime: c.Walltime}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	if h.kv == nil {
		h.kv = NewMemoryKV(MemoryKVConfig{})
	}
	if h.counters == nil {
		h.counters = noCounters{}
	}
	if c.CacheDir == "" {
		h.cache = wazero.NewCompilationCache()
		return h, nil
	}
	cache, err := wazero.NewCompilationCacheWithDir(c.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("plugin cache %s: %w", c.CacheDir, err)
	}
	h.cache = cache
	return h, nil
}

// Close releases the compilation cache. Close the host's plugins first.
func (h *Host) Close(ctx context.Context) error { return h.cache.Close(ctx) }

// FailurePolicy is what a plugin's failure means for the message.
type FailurePolicy uint8

const (
	// Tempfail answers 451 4.3.0, so that the client retries later.
	Tempfail FailurePolicy = iota
	// Skip goes on as if the plugin had answered Continue.
	Skip
)

// ParseFailurePolicy reads gateway.toml's on_failure: "tempfail" or "skip".
func ParseFailurePolicy(s string) (FailurePolicy, error) {
	switch s {
	case "tempfail", "":
		return Tempfail, nil
	case "skip":
		return Skip, nil
	}
	return 0, fmt.Errorf("on_failure %q is neither \"tempfail\" nor \"skip\"", s)
}

func (f FailurePolicy) String() string {
	if f == Skip {
		return "skip"
	}
	return "tempfail"
}

// Spec is one plugin as gateway.toml describes it.
type Spec struct {
	Name string
	Path string // the .wasm file
	// Stages the plugin is called at; nil means all it declares. A stage it
	// does not declare is a load error.
	Stages   []abi.Stage
	Config   []byte // its [plugin.config] table as TOML text
	Hostname string
	// Domains are the domains the gateway is the MX for, which the plugin
	// is told so that it can refuse settings that forward to them.
	Domains []string
	// Timeout bounds each call; 0 means DefaultTimeout.
	Timeout time.Duration
	// MemoryLimit bounds each instance's linear memory, rounded down to
	// whole 64 KiB pages; 0 means DefaultMemoryLimit.
	MemoryLimit uint64
	// StackLimit bounds what each instance's calls put on wazero's call
	// stack, by the instrumenter's estimate of their frames
	// (interrupt.CheckStackBudget says which values it takes); 0 means
	// DefaultStackLimit.
	StackLimit uint64
	// Instances is the pool size; 0 means runtime.GOMAXPROCS(0).
	Instances int
	OnFailure FailurePolicy
	// Capabilities are the host functions granted beyond log.
	Capabilities abi.Capability
	// Services are where the plugin runs, as gateway.toml names them
	// ("mx", "submission"): Chain.For picks the plugins of one.
	Services []string
	// DNSLookups bounds the DNS lookups of one call; 0 means
	// DefaultDNSLookups.
	DNSLookups int
	// Resolver answers this plugin's dns_lookup instead of the host's, so
	// that a chain built from a new configuration uses that
	// configuration's [dns]; nil: the host's.
	Resolver *resolver.Resolver
	// HTTPHosts are the host:port pairs that a plugin granted http may
	// send requests to, over http or https.
	HTTPHosts []string
	// HTTPTimeout bounds each HTTP request, within the call's deadline;
	// 0 means DefaultHTTPTimeout.
	HTTPTimeout time.Duration
	// HTTPMaxResponse bounds the body of an HTTP response; 0 means
	// DefaultHTTPMaxResponse.
	HTTPMaxResponse int64

	// deadline is how calls are held to Timeout; benchmarks compare the
	// others to the gateway's (the zero value).
	deadline deadlineMode
	// startTimeout replaces the default bound on starting an instance,
	// for tests of plugins that never finish starting.
	startTimeout time.Duration
	// ungranted loads a module that imports functions it was not granted
	// (refused otherwise: grants.go), for tests of their denial.
	ungranted bool
}

// Defaults for a Spec's zero values.
const (
	DefaultTimeout     = time.Second
	DefaultMemoryLimit = 64 << 20
	DefaultStackLimit  = interrupt.DefaultStackBudget
)

const (
	pageSize = 65536
	// startTimeout bounds starting an instance and configuring it, which
	// runs the guest's runtime initialisation: far slower than a call.
	startTimeout = 10 * time.Second
	// maxSleep caps each sleep of the guest, because a host-side sleep does
	// not see the call's deadline; the guest loops back and sleeps again,
	// and the deadline catches it in between.
	maxSleep = 10 * time.Millisecond
)

// Load compiles, checks, starts and configures a plugin. Every instance of
// its pool is started and configured before Load returns, so that a
// refused configuration fails the load rather than the first message.
func (h *Host) Load(ctx context.Context, s Spec) (*Plugin, error) {
	p, err := h.load(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", s.Name, err)
	}
	return p, nil
}

func (h *Host) load(ctx context.Context, s Spec) (*Plugin, error) {
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.MemoryLimit == 0 {
		s.MemoryLimit = DefaultMemoryLimit
	}
	if s.StackLimit == 0 {
		s.StackLimit = DefaultStackLimit
	}
	if err := interrupt.CheckStackBudget(s.StackLimit); err != nil {
		return nil, fmt.Errorf("stack_limit of %d bytes: %w", s.StackLimit, err)
	}
	if s.Instances <= 0 {
		s.Instances = runtime.GOMAXPROCS(0)
	}
	pages := min(s.MemoryLimit/pageSize, 65536)
	if pages == 0 {
		return nil, fmt.Errorf("memory_limit of %d bytes is less than one 64 KiB page", s.MemoryLimit)
	}
	if s.DNSLookups <= 0 {
		s.DNSLookups = DefaultDNSLookups
	}
	res := cmp.Or(s.Resolver, h.resolver)
	if s.Capabilities.Has(abi.CapDNS) && res == nil {
		return nil, errors.New("capability dns: this host has no resolver")
	}
	var web *httpClient
	if s.Capabilities.Has(abi.CapHTTP) {
		var err error
		if web, err = newHTTPClient(s); err != nil {
			return nil, err
		}
	}
	wasm, err := os.ReadFile(s.Path)
	if err != nil {
		return nil, err
	}

	// The deadline's checks and the stack budget go in before compiling,
	// so that the compilation cache keys on the instrumented module: the
	// same file with another stack_limit compiles apart.
	code := wasm
	if s.deadline == deadlineInterrupt {
		if code, err = interrupt.Instrument(wasm, uint32(s.StackLimit)); err != nil {
			return nil, fmt.Errorf("%s %w", s.Path, err)
		}
	}

	logger := h.logger.With("plugin", s.Name)
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(h.cache).
		WithMemoryLimitPages(uint32(pages)).
		WithCloseOnContextDone(s.deadline == deadlineCCD))
	p := &Plugin{
		name:         s.Name,
		timeout:      s.Timeout,
		stackLimit:   s.StackLimit,
		deadline:     s.deadline,
		startTimeout: cmp.Or(s.startTimeout, startTimeout),
		onFailure:    s.OnFailure,
		logger:       logger,
		rt:           rt,
		memory:       newMemoryPool(),
		pool:         make(chan *instance, s.Instances),
		closed:       make(chan struct{}),
		info:         newInfo(s, wasm),
		host: &hostFuncs{
			plugin: s.Name, caps: s.Capabilities, lookups: s.DNSLookups, logger: logger,
			resolver: res, kv: h.kv, counters: h.counters, http: web,
		},
		configReq: abi.AppendConfigureRequest(nil, &abi.ConfigureRequest{
			Version: abi.Version, Name: s.Name, Hostname: s.Hostname, Config: s.Config, Domains: s.Domains,
		}),
	}
	if err := p.prepare(ctx, code, s, pages, h.walltime); err != nil {
		// The pool may be part full: release everything without waiting
		// for it, as Close would.
		_ = rt.Close(ctx)
		p.memory.release()
		return nil, err
	}
	return p, nil
}

// prepare compiles and checks the module, fills the pool and settles which
// stages the plugin is called at.
func (p *Plugin) prepare(ctx context.Context, wasm []byte, s Spec, pages uint64, walltime func() time.Time) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, p.rt); err != nil {
		return err
	}
	if err := instantiateHostModule(ctx, p.rt, p.host); err != nil {
		return err
	}
	if err := instantiateYield(ctx, p.rt); err != nil {
		return err
	}
	compiled, err := compile(ctx, p.rt, wasm)
	if err != nil {
		if strings.Contains(err.Error(), "over limit of") {
			return fmt.Errorf("memory_limit of %s (%d pages) is below what %s needs: %w",
				pagesSize(pages), pages, s.Path, err)
		}
		return fmt.Errorf("%s is not a WebAssembly module we can compile: %w", s.Path, err)
	}
	if err := checkModule(compiled); err != nil {
		return fmt.Errorf("%s %w", s.Path, err)
	}
	if !s.ungranted {
		if err := checkGranted(compiled, s.Capabilities); err != nil {
			return err
		}
	}
	mc := wazero.NewModuleConfig().WithSysWalltime()
	if walltime != nil {
		mc = mc.WithWalltime(func() (int64, int32) {
			t := walltime()
			return t.Unix(), int32(t.Nanosecond())
		}, sys.ClockResolution(time.Microsecond))
	}
	p.moduleConfig = mc.
		WithName("").
		WithStartFunctions(). // instance.start runs them, under the deadline
		WithSysNanotime().
		WithNanosleep(cappedSleep).
		WithRandSource(rand.Reader).
		// The Go runtime collects harder as it nears GOMEMLIMIT, so a Go
		// guest stays under the page limit instead of dying at it.
		WithEnv("GOMEMLIMIT", strconv.FormatUint(pages*pageSize/4*3, 10))
	p.compiled = compiled

	// The first instance's declaration is the plugin's; start checks that
	// the others say the same.
	first, resp, err := p.startConfigured(ctx)
	if err != nil {
		return err
	}
	p.declared, p.permissions = resp.Stages&allStages, resp.Permissions
	p.pool <- first
	for range cap(p.pool) - 1 {
		inst, err := p.start(ctx)
		if err != nil {
			return err
		}
		p.pool <- inst
	}
	return p.subscribe(s.Stages)
}

// pagesSize writes a number of pages as MiB or KiB.
func pagesSize(pages uint64) string {
	if pages%16 == 0 {
		return strconv.FormatUint(pages/16, 10) + " MiB"
	}
	return strconv.FormatUint(pages*64, 10) + " KiB"
}

func cappedSleep(ns int64) { time.Sleep(min(time.Duration(ns), maxSleep)) }

// subscribe settles the stages the plugin is called at: those asked for,
// each of which it must declare, or all it declares.
func (p *Plugin) subscribe(asked []abi.Stage) error {
	if p.declared == 0 {
		return errors.New("declares no stages, so it would never be called")
	}
	if asked == nil {
		p.stages = p.declared
		return nil
	}
	for _, st := range asked {
		if !p.declared.Has(st) {
			return fmt.Errorf("stages: the plugin does not handle %s (it declares %s)", st, stageList(p.declared))
		}
		p.stages |= abi.StageSetOf(st)
	}
	return nil
}

func stageList(set abi.StageSet) string {
	var names []string
	for _, st := range abi.Stages() {
		if set.Has(st) {
			names = append(names, st.String())
		}
	}
	return strings.Join(names, ", ")
}

// allStages masks what a guest declares to the stages this host knows: a
// newer guest may declare stages that an older host never calls.
var allStages = abi.StageSetOf(abi.Stages()...)

// compile compiles a module, turning a panic of wazero's into an error:
// wazero v1.12 can panic on some malformed modules, and a bad file given
// to a reload must not take the gateway down with it.
func compile(ctx context.Context, rt wazero.Runtime, wasm []byte) (c wazero.CompiledModule, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the WebAssembly compiler failed on it: %v", r)
		}
	}()
	return rt.CompileModule(ctx, wasm)
}
