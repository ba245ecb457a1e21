package plugin

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The host functions of module "sluice" (sdk/ABI.md). Each plugin has its
// own runtime and so its own instance of the host module, whose functions
// know the plugin's name and capabilities; what belongs to one call (the
// message, the DNS budget) comes with the call's context.

// Counters receives the counters plugins add to with counter_add; the
// gateway's metrics registry implements it. It must be safe for
// concurrent use.
type Counters interface {
	Add(plugin, name string, delta float64)
}

type noCounters struct{}

func (noCounters) Add(string, string, float64) {}

// DefaultDNSLookups is how many DNS lookups one call of a plugin may make
// when its Spec does not say.
const DefaultDNSLookups = 10

// Message is the message at the data stage. Plugins get it by reference:
// the header_get, headers and body_read functions copy out only what a
// plugin asks for, so that one that never reads the body never pays for it.
type Message struct {
	// Header is the header block as the gateway parsed it, once: the
	// host functions look fields up in it rather than parse it again.
	Header *message.Header
	Body   []byte
}

// NewMessage splits a whole message, with CRLF or LF line endings, into
// its header and body.
func NewMessage(raw []byte) *Message {
	h, b := message.Split(message.NormalizeLineEndings(raw))
	return &Message{Header: message.ParseHeader(h), Body: b}
}

// field returns the value of the index-th field with this name, as
// abi.ParseHeader reads it (abi.FieldValue).
func (m *Message) field(name string, index uint32) (string, bool) {
	if index > math.MaxInt32 {
		return "", false
	}
	f, ok := m.Header.Get(name, int(index))
	if !ok {
		return "", false
	}
	return abi.FieldValue(f.Raw), true
}

// callState is what host functions need to know about the call in
// progress. One exists per plugin call, and the call runs on one
// goroutine, so it needs no lock.
type callState struct {
	msg      *Message  // at the data stage; nil at others
	deadline time.Time // no DNS lookup, HTTP request or KV call runs past it
	lookups  int       // DNS lookups left
	// last is the last DNS answer, served again without cost when the
	// guest asks again with a larger buffer.
	last struct {
		qtype  uint16
		name   string // for dns_lookup_many, the list of names as the guest wrote it
		many   bool   // the answer of dns_lookup_many
		answer []byte
	}
	httpRequests int // HTTP requests left
	// lastHTTP is the last HTTP response, kept like last.
	lastHTTP struct{ request, answer []byte }
}

type callKey struct{}

// callContext returns ctx carrying the state of one call of p. Plugins
// whose host functions need none get ctx itself, so that they pay nothing.
func (p *Plugin) callContext(ctx context.Context, msg *Message) context.Context {
	if p.host.caps&(abi.CapHeaders|abi.CapBody|abi.CapDNS|abi.CapKV|abi.CapHTTP) == 0 {
		return ctx
	}
	return context.WithValue(ctx, callKey{}, &callState{
		msg: msg,
		// Lookups and KV calls stop at three quarters of the call's
		// time, so that a plugin whose DNS or store hangs still has time
		// to answer without it.
		deadline:     time.Now().Add(p.timeout * 3 / 4),
		lookups:      p.host.lookups,
		httpRequests: httpRequests,
	})
}

// callOf returns the state of the call in progress, or nil outside a stage
// call (while configuring).
func callOf(ctx context.Context) *callState {
	c, _ := ctx.Value(callKey{}).(*callState)
	return c
}

// hostFuncs is one plugin's view of the host.
type hostFuncs struct {
	plugin   string
	caps     abi.Capability
	lookups  int // per call
	logger   *slog.Logger
	resolver *resolver.Resolver
	kv       KV
	counters Counters
	http     *httpClient  // for a plugin granted http
	kvLog    KVFailureLog // of its store's failures
}

// hostFunc is one function of module "sluice".
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	cap     abi.Capability // needed to use it; 0 for none
	fn      func(h *hostFuncs, ctx context.Context, mod api.Module, stack []uint64)
}

var f64 = api.ValueTypeF64

func types(t ...api.ValueType) []api.ValueType { return t }

// hostFuncTable is every function of module "sluice": checkModule checks
// imports against it and instantiateHostModule provides it.
var hostFuncTable = []hostFunc{
	{abi.VersionMarker, nil, nil, 0, func(*hostFuncs, context.Context, api.Module, []uint64) {}},
	{abi.FuncLog, types(i32, i32, i32), nil, 0, (*hostFuncs).log},
	{abi.FuncHeaderGet, types(i32, i32, i32, i32, i32), types(i32), abi.CapHeaders, (*hostFuncs).headerGet},
	{abi.FuncHeaders, types(i32, i32), types(i32), abi.CapHeaders, (*hostFuncs).headers},
	{abi.FuncBodySize, nil, types(i32), abi.CapBody, (*hostFuncs).bodySize},
	{abi.FuncBodyRead, types(i32, i32, i32), types(i32), abi.CapBody, (*hostFuncs).bodyRead},
	{abi.FuncDNSLookup, types(i32, i32, i32, i32, i32), types(i32), abi.CapDNS, (*hostFuncs).dnsLookup},
	{abi.FuncDNSLookupMany, types(i32, i32, i32, i32, i32), types(i32), abi.CapDNS, (*hostFuncs).dnsLookupMany},
	{abi.FuncKVGet, types(i32, i32, i32, i32), types(i32), abi.CapKV, (*hostFuncs).kvGet},
	{abi.FuncKVSet, types(i32, i32, i32, i32, i64), types(i32), abi.CapKV, (*hostFuncs).kvSet},
	{abi.FuncKVDelete, types(i32, i32), types(i32), abi.CapKV, (*hostFuncs).kvDelete},
	{abi.FuncKVIncr, types(i32, i32, i64, i64, i32), types(i32), abi.CapKV, (*hostFuncs).kvIncr},
	{abi.FuncCounterAdd, types(i32, i32, f64), types(i32), abi.CapMetrics, (*hostFuncs).counterAdd},
	{abi.FuncHTTPRequest, types(i32, i32, i32, i32), types(i32), abi.CapHTTP, (*hostFuncs).httpRequest},
}

// instantiateHostModule provides the imports of module "sluice" to one
// plugin's runtime. A function the plugin was not granted is there all the
// same, so that the module links, and answers ErrDenied.
func instantiateHostModule(ctx context.Context, rt wazero.Runtime, h *hostFuncs) error {
	b := rt.NewHostModuleBuilder(abi.HostModule)
	for _, f := range hostFuncTable {
		fn := f.fn
		call := api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) { fn(h, ctx, mod, stack) })
		if !h.caps.Has(f.cap) {
			call = denied
		}
		b = b.NewFunctionBuilder().WithGoModuleFunction(call, f.params, f.results).Export(f.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

func denied(_ context.Context, _ api.Module, stack []uint64) { ret(stack, abi.ErrDenied) }

// ret sets an i32 result.
func ret(stack []uint64, v int32) { stack[0] = api.EncodeI32(v) }

// guestBytes returns the guest's memory at (ptr, n): a view, valid only
// until the guest runs again.
func guestBytes(mod api.Module, ptr, n uint64) ([]byte, bool) {
	return mod.Memory().Read(uint32(ptr), uint32(n))
}

// answer writes data into the guest's buffer (ptr, capacity) if it fits
// and returns the length it needs, fitting or not: the guest asks again
// with a buffer that large.
func answer(mod api.Module, ptr, capacity uint64, data []byte) int32 {
	if _, ok := guestBytes(mod, ptr, capacity); !ok {
		return abi.ErrMemory
	}
	if len(data) > math.MaxInt32 {
		return abi.ErrInvalid
	}
	if uint64(len(data)) <= uint64(uint32(capacity)) && !mod.Memory().Write(uint32(ptr), data) {
		return abi.ErrMemory
	}
	return int32(len(data))
}

// maxLogMessage caps what one log call of a plugin writes.
const maxLogMessage = 4096

// log is (level, ptr, len) → a line in the gateway's log, tagged with the
// plugin's name.
func (h *hostFuncs) log(ctx context.Context, mod api.Module, stack []uint64) {
	level := slog.Level(int32(stack[0]))
	if !h.logger.Enabled(ctx, level) {
		return
	}
	// The whole region must lie in memory, as for every other host
	// function; only then is it cut to what is logged.
	b, ok := guestBytes(mod, stack[1], stack[2])
	if !ok {
		h.logger.Warn("plugin logged from outside its memory", "ptr", uint32(stack[1]), "len", uint32(stack[2]))
		return
	}
	msg := string(b[:min(len(b), maxLogMessage)])
	if len(b) > maxLogMessage {
		msg += "… (cut)"
	}
	h.logger.Log(ctx, level, msg)
}

// messageOf returns the message of the call in progress, or nil outside
// the data stage.
func messageOf(ctx context.Context) *Message {
	if c := callOf(ctx); c != nil {
		return c.msg
	}
	return nil
}

// headerGet is (name_ptr, name_len, index, buf_ptr, buf_cap) → length.
func (h *hostFuncs) headerGet(ctx context.Context, mod api.Module, stack []uint64) {
	m := messageOf(ctx)
	if m == nil {
		ret(stack, abi.ErrStage)
		return
	}
	name, ok := guestBytes(mod, stack[0], stack[1])
	if !ok {
		ret(stack, abi.ErrMemory)
		return
	}
	v, found := m.field(string(name), uint32(stack[2]))
	if !found {
		ret(stack, abi.ErrNotFound)
		return
	}
	ret(stack, answer(mod, stack[3], stack[4], []byte(v)))
}

// headers is (buf_ptr, buf_cap) → length of the header block.
func (h *hostFuncs) headers(ctx context.Context, mod api.Module, stack []uint64) {
	m := messageOf(ctx)
	if m == nil {
		ret(stack, abi.ErrStage)
		return
	}
	ret(stack, answer(mod, stack[0], stack[1], m.Header.Bytes()))
}

// bodySize is () → the body's length.
func (h *hostFuncs) bodySize(ctx context.Context, _ api.Module, stack []uint64) {
	m := messageOf(ctx)
	switch {
	case m == nil:
		ret(stack, abi.ErrStage)
	case len(m.Body) > math.MaxInt32:
		ret(stack, abi.ErrInvalid)
	default:
		ret(stack, int32(len(m.Body)))
	}
}

// bodyRead is (offset, buf_ptr, buf_cap) → bytes written, 0 at the end.
func (h *hostFuncs) bodyRead(ctx context.Context, mod api.Module, stack []uint64) {
	m := messageOf(ctx)
	if m == nil {
		ret(stack, abi.ErrStage)
		return
	}
	off, ptr, capacity := uint64(uint32(stack[0])), stack[1], uint64(uint32(stack[2]))
	if _, ok := guestBytes(mod, ptr, capacity); !ok {
		ret(stack, abi.ErrMemory)
		return
	}
	if off >= uint64(len(m.Body)) {
		ret(stack, 0)
		return
	}
	chunk := m.Body[off:min(uint64(len(m.Body)), off+min(capacity, math.MaxInt32))]
	mod.Memory().Write(uint32(ptr), chunk)
	ret(stack, int32(len(chunk)))
}

// counterAdd is (name_ptr, name_len, delta) → 0.
func (h *hostFuncs) counterAdd(_ context.Context, mod api.Module, stack []uint64) {
	name, ok := guestBytes(mod, stack[0], stack[1])
	if !ok {
		ret(stack, abi.ErrMemory)
		return
	}
	delta := api.DecodeF64(stack[2])
	// A counter only goes up; NaN fails both comparisons.
	if !counterName(name) || !(delta >= 0 && delta <= math.MaxFloat64) {
		ret(stack, abi.ErrInvalid)
		return
	}
	h.counters.Add(h.plugin, string(name), delta)
	ret(stack, 0)
}

// counterName accepts what makes a good metric name once prefixed: a
// lower-case letter, then lower-case letters, digits and _.
func counterName(b []byte) bool {
	if len(b) == 0 || len(b) > abi.MaxCounterName || b[0] < 'a' || b[0] > 'z' {
		return false
	}
	for _, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}
