package sdktest

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// An Option changes what the native host offers a plugin.
type Option func(*host)

// Deny withholds capabilities, as an operator who does not list them in
// the plugin's capabilities: their host functions answer sdk.ErrDenied.
// Without it, every capability is granted.
func Deny(c abi.Capability) Option { return func(h *host) { h.denied |= c } }

// Record adds a DNS record set that sdk.Lookup finds: values in the text
// forms of sdk/ABI.md (an address, a TXT record's joined strings,
// "preference host" for MX, a name for PTR). A name with no record of any
// type does not exist (sdk.ErrNotFound); a name with records of other types
// answers an empty list.
func Record(qtype uint16, name string, values ...string) Option {
	return func(h *host) {
		key := dnsKey{qtype, strings.ToLower(strings.TrimSuffix(name, "."))}
		h.dns[key] = append(h.dns[key], values...)
	}
}

// Domains sets the domains the gateway is the MX for, which the plugin is
// told when it is configured (sdk.Config.Domains).
func Domains(d ...string) Option { return func(h *host) { h.domains = d } }

// Clock sets the clock of the key-value store's TTLs; without it, the
// store uses time.Now.
func Clock(now func() time.Time) Option { return func(h *host) { h.now = now } }

// host is the native stand-in for the gateway's host functions: it serves
// one plugin's header, body, DNS, key-value and counter calls from what the
// test gave it, with the gateway's rules for capabilities, stages and
// argument limits.
type host struct {
	domains []string
	denied  abi.Capability
	now     func() time.Time
	stage   abi.Stage // of the call in progress; 0 while configuring
	lookups int       // DNS lookups made in the call in progress
	header  []byte    // the header block, lines ending in CRLF
	fields  []abi.Header
	body    []byte
	size    int // of the whole message
	dns     map[dnsKey][]string
	kv      map[string]entry
	count   map[string]float64

	httpHosts   map[string]bool // host:port
	httpTimeout time.Duration
	httpMax     int64
	httpSent    int // HTTP requests sent in the call in progress
	lastHTTP    struct{ request, answer []byte }
}

type dnsKey struct {
	qtype uint16
	name  string
}

type entry struct {
	value   []byte
	expires time.Time
}

// The gateway's limits: DNS lookups in one call, the entries of a
// plugin's store, and the longest TTL.
const (
	maxLookups   = 10
	maxKVEntries = 10000
	maxTTL       = 366 * 24 * time.Hour
)

func newHost() *host {
	return &host{
		now: time.Now, dns: map[dnsKey][]string{}, kv: map[string]entry{}, count: map[string]float64{},
		httpHosts: map[string]bool{}, httpTimeout: 5 * time.Second, httpMax: 1 << 20,
	}
}

// setMessage splits msg into the header block and the body as the gateway
// does, after turning bare LF line ends into CRLF as it does on receipt.
func (h *host) setMessage(msg []byte) {
	msg = crlf(msg)
	h.size = len(msg)
	head, body, found := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !found {
		if bytes.HasPrefix(msg, []byte("\r\n")) {
			head, body = nil, msg[2:]
		} else {
			head, body = msg, nil
		}
	} else {
		head = append(head, "\r\n"...)
	}
	h.header, h.body, h.fields = head, body, abi.ParseHeader(head)
}

// crlf turns every line end into CRLF.
func crlf(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/40)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

// answer writes data into buf if it fits and returns its length.
func answer(buf, data []byte) int32 {
	if len(data) <= len(buf) {
		copy(buf, data)
	}
	return int32(len(data))
}

// message checks that the message may be read now.
func (h *host) message(c abi.Capability) int32 {
	if h.denied.Has(c) {
		return abi.ErrDenied
	}
	if h.stage != abi.StageData {
		return abi.ErrStage
	}
	return 0
}

func (h *host) HeaderGet(name string, index uint32, buf []byte) int32 {
	if code := h.message(abi.CapHeaders); code != 0 {
		return code
	}
	for _, f := range h.fields {
		if asciiEqualFold(f.Name, name) {
			if index == 0 {
				return answer(buf, []byte(f.Value))
			}
			index--
		}
	}
	return abi.ErrNotFound
}

// asciiEqualFold reports whether two field names are equal ignoring the
// case of ASCII letters only, as the gateway's header_get matches them
// (sdk/ABI.md): strings.EqualFold would also take "ſubject" for Subject.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (h *host) Headers(buf []byte) int32 {
	if code := h.message(abi.CapHeaders); code != 0 {
		return code
	}
	return answer(buf, h.header)
}

func (h *host) BodySize() int32 {
	if code := h.message(abi.CapBody); code != 0 {
		return code
	}
	return int32(len(h.body))
}

func (h *host) BodyRead(offset uint32, buf []byte) int32 {
	if code := h.message(abi.CapBody); code != 0 {
		return code
	}
	if int64(offset) >= int64(len(h.body)) {
		return 0
	}
	return int32(copy(buf, h.body[offset:]))
}

func (h *host) DNSLookup(qtype uint16, name string, buf []byte) int32 {
	if h.denied.Has(abi.CapDNS) {
		return abi.ErrDenied
	}
	if h.stage == 0 {
		return abi.ErrStage // no lookups while configuring
	}
	switch qtype {
	case abi.TypeA, abi.TypeAAAA, abi.TypeTXT, abi.TypeMX, abi.TypePTR:
	default:
		return abi.ErrInvalid
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return abi.ErrInvalid
	}
	if h.lookups >= maxLookups {
		return abi.ErrBudget
	}
	h.lookups++
	exists := false
	for k := range h.dns {
		exists = exists || k.name == name
	}
	if !exists {
		return abi.ErrNotFound
	}
	return answer(buf, abi.AppendStrings(nil, h.dns[dnsKey{qtype, name}]))
}

func (h *host) KVGet(key string, buf []byte) int32 {
	if h.denied.Has(abi.CapKV) {
		return abi.ErrDenied
	}
	if key == "" || len(key) > abi.MaxKVKey {
		return abi.ErrInvalid
	}
	e, ok := h.kv[key]
	if !ok || !h.now().Before(e.expires) {
		return abi.ErrNotFound
	}
	return answer(buf, e.value)
}

func (h *host) KVSet(key string, value []byte, ttlMillis int64) int32 {
	if h.denied.Has(abi.CapKV) {
		return abi.ErrDenied
	}
	if key == "" || len(key) > abi.MaxKVKey || len(value) > abi.MaxKVValue || ttlMillis <= 0 || ttlMillis > maxTTL.Milliseconds() {
		return abi.ErrInvalid
	}
	now := h.now()
	if code := h.room(key, now); code < 0 {
		return code
	}
	h.kv[key] = entry{value: bytes.Clone(value), expires: now.Add(time.Duration(ttlMillis) * time.Millisecond)}
	return 0
}

func (h *host) KVDelete(key string) int32 {
	if h.denied.Has(abi.CapKV) {
		return abi.ErrDenied
	}
	if key == "" || len(key) > abi.MaxKVKey {
		return abi.ErrInvalid
	}
	delete(h.kv, key)
	return 0
}

func (h *host) KVIncr(key string, delta, ttlMillis int64) (int64, int32) {
	if h.denied.Has(abi.CapKV) {
		return 0, abi.ErrDenied
	}
	if key == "" || len(key) > abi.MaxKVKey || ttlMillis <= 0 || ttlMillis > maxTTL.Milliseconds() {
		return 0, abi.ErrInvalid
	}
	now := h.now()
	var n int64
	e, ok := h.kv[key]
	if ok && now.Before(e.expires) {
		var err error
		if n, err = strconv.ParseInt(string(e.value), 10, 64); err != nil {
			return 0, abi.ErrInvalid
		}
	} else {
		e.expires = now.Add(time.Duration(ttlMillis) * time.Millisecond)
	}
	sum := n + delta
	if (delta > 0 && sum < n) || (delta < 0 && sum > n) {
		return 0, abi.ErrInvalid
	}
	if code := h.room(key, now); code < 0 {
		return 0, code
	}
	e.value = strconv.AppendInt(nil, sum, 10)
	h.kv[key] = e
	return sum, 0
}

// room makes room for one more entry under key, if it is new, by dropping
// expired entries; ErrFull if there is none.
func (h *host) room(key string, now time.Time) int32 {
	if _, ok := h.kv[key]; ok || len(h.kv) < maxKVEntries {
		return 0
	}
	for k, e := range h.kv {
		if !now.Before(e.expires) {
			delete(h.kv, k)
		}
	}
	if len(h.kv) >= maxKVEntries {
		return abi.ErrFull
	}
	return 0
}

func (h *host) CounterAdd(name string, delta float64) int32 {
	if h.denied.Has(abi.CapMetrics) {
		return abi.ErrDenied
	}
	if !counterName(name) || delta < 0 || math.IsNaN(delta) || math.IsInf(delta, 0) {
		return abi.ErrInvalid
	}
	h.count[name] += delta
	return 0
}

// counterName reports whether name is lower-case letters, digits and _,
// starting with a letter, at most abi.MaxCounterName bytes.
func counterName(name string) bool {
	if name == "" || len(name) > abi.MaxCounterName || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// calling serialises calls of every Plugin, because the SDK's host
// functions are package state: while a Plugin runs a call, they are its
// host's (sdk.SetImports).
var calling sync.Mutex

// call runs f with h as the SDK's host functions, at stage.
func (h *host) call(stage abi.Stage, f func()) {
	calling.Lock()
	defer calling.Unlock()
	h.stage, h.lookups, h.httpSent, h.lastHTTP.answer = stage, 0, 0, nil
	defer sdk.SetImports(h)()
	f()
}
