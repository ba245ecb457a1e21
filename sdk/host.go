package sdk

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// Imports are the host functions of sdk/ABI.md at the level of bytes. A
// function that answers with data writes it into buf only if it fits and
// returns its length either way; every function returns a negative abi.Err
// code when it fails. BodyRead writes as much as fits and returns how much
// it wrote. In a plugin the gateway provides them; a native test installs
// a stand-in with SetImports. Plugins use the typed functions below
// (Header, ReadBody, LookupTXT, KVGet, Count, ...) instead.
type Imports interface {
	HeaderGet(name string, index uint32, buf []byte) int32
	Headers(buf []byte) int32
	BodySize() int32
	BodyRead(offset uint32, buf []byte) int32
	DNSLookup(qtype uint16, name string, buf []byte) int32
	KVGet(key string, buf []byte) int32
	KVSet(key string, value []byte, ttlMillis int64) int32
	KVDelete(key string) int32
	// KVIncr answers the new value beside 0, or an error code.
	KVIncr(key string, delta, ttlMillis int64) (int64, int32)
	CounterAdd(name string, delta float64) int32
	HTTPRequest(req []byte, buf []byte) int32
}

// LookupManyImports is the batched DNS lookup (abi.FuncDNSLookupMany), kept
// out of Imports so that stand-ins written before it still satisfy
// Imports: LookupMany asks their DNSLookup once per name instead. names is
// the list of names in the ABI's encoding (abi.AppendStrings).
type LookupManyImports interface {
	DNSLookupMany(qtype uint16, names []byte, buf []byte) int32
}

// imports are the host functions the typed functions call: the gateway's
// in a WebAssembly build, none natively until a test sets some. It is
// package state because the gateway's imports are package-level functions.
var imports = defaultImports()

// SetImports makes the typed host functions (Header, ReadBody, LookupTXT,
// ...) call i, for native tests of a plugin (sdk/sdktest does this), and
// returns a function that puts back what was there. Tests that set imports
// must not run in parallel with each other.
func SetImports(i Imports) (restore func()) {
	old := imports
	imports = i
	return func() { imports = old }
}

// Errors of the host functions. They come wrapped with the function's name;
// test for them with errors.Is.
var (
	// ErrNoHost: a native build with no SetImports has no gateway to ask.
	ErrNoHost = errors.New("no host functions outside the gateway (tests: sdk.SetImports)")
	// ErrDenied: gateway.toml does not grant the plugin this capability
	// (capabilities = [...] in its [[plugin]]).
	ErrDenied   = errors.New("capability not granted to this plugin in gateway.toml")
	ErrStage    = errors.New("not available at this stage")
	ErrNotFound = errors.New("not found")
	ErrMemory   = errors.New("argument outside the plugin's memory")
	ErrInvalid  = errors.New("invalid argument")
	// ErrBudget: the call's DNS lookups or HTTP requests, or its time for
	// them, are used up. A lookup or request cut off at the call's deadline
	// gets it too, so the text names all three.
	ErrBudget    = errors.New("the call's DNS lookups, HTTP requests or time are used up")
	ErrTemporary = errors.New("temporary failure")
	ErrFull      = errors.New("key-value store full")
	// ErrNotAllowed: the URL's host and port are not in the plugin's
	// http_hosts in gateway.toml, or its scheme is not http or https.
	ErrNotAllowed = errors.New("host not allowed: add its host:port to the plugin's http_hosts in gateway.toml")
	// ErrTooLarge: the HTTP response is over the plugin's http_max_response.
	ErrTooLarge = errors.New("response larger than the plugin's http_max_response")
	// ErrTimeout: no whole HTTP response within the plugin's http_timeout
	// or the call's deadline.
	ErrTimeout = errors.New("no response in time")
)

var codeErrors = map[int32]error{
	abi.ErrDenied: ErrDenied, abi.ErrStage: ErrStage, abi.ErrNotFound: ErrNotFound,
	abi.ErrMemory: ErrMemory, abi.ErrInvalid: ErrInvalid, abi.ErrBudget: ErrBudget,
	abi.ErrTemporary: ErrTemporary, abi.ErrFull: ErrFull,
	abi.ErrNotAllowed: ErrNotAllowed, abi.ErrTooLarge: ErrTooLarge, abi.ErrTimeout: ErrTimeout,
}

func hostError(fn string, code int32) error {
	base, ok := codeErrors[code]
	if !ok {
		return fmt.Errorf("sdk: %s: %s", fn, abi.ErrorText(code))
	}
	k := hostErrorKey{fn, code}
	hostErrors.mu.Lock()
	defer hostErrors.mu.Unlock()
	err, ok := hostErrors.made[k]
	if !ok {
		err = fmt.Errorf("sdk: %s: %w", fn, base)
		hostErrors.made[k] = err
	}
	return err
}

// hostErrors keeps the errors hostError made for the codes it knows, by
// function and code: the same few come back call after call (a header
// field or a name not found, at the end of every HeaderValues), and
// formatting one was a good part of a small plugin's call in WebAssembly.
// An error is a value nobody changes, so the same one can go to every
// caller. The functions and known codes are few, so the map stays small.
var hostErrors = struct {
	mu   sync.Mutex
	made map[hostErrorKey]error
}{made: map[hostErrorKey]error{}}

type hostErrorKey struct {
	fn   string
	code int32
}

// result turns a function's return value into an error, if it is one.
func result(fn string, n int32) error {
	if n < 0 {
		return hostError(fn, n)
	}
	return nil
}

// firstBuffer is the size tried first: most answers (a header value, a
// TXT record, a small value) fit, and the rest cost one call more.
const firstBuffer = 512

// fetch calls f with a buffer until its answer fits, and returns the
// answer. A second try normally fits; more happen only if the data grew
// in between.
func fetch(fn string, f func(i Imports, buf []byte) int32) ([]byte, error) {
	i := imports
	if i == nil {
		return nil, fmt.Errorf("sdk: %s: %w", fn, ErrNoHost)
	}
	buf := make([]byte, firstBuffer)
	for range 4 {
		n := f(i, buf)
		if n < 0 {
			return nil, hostError(fn, n)
		}
		if int(n) <= len(buf) {
			return buf[:n], nil
		}
		buf = make([]byte, n)
	}
	return nil, fmt.Errorf("sdk: %s: the answer kept growing", fn)
}

// call runs a host function that answers with a number only.
func call(fn string, f func(i Imports) int32) (int32, error) {
	i := imports
	if i == nil {
		return 0, fmt.Errorf("sdk: %s: %w", fn, ErrNoHost)
	}
	n := f(i)
	return n, result(fn, n)
}

// Field is one header field: its name as written and its unfolded value.
type Field = abi.Header

// Header returns the value of the first header field with this name (its
// ASCII letters in any case), unfolded and trimmed but otherwise as written: encoded words
// (RFC 2047) are not decoded. It is ErrNotFound when there is none. Like
// every header and body function it needs the "headers" capability and
// works at the data stage only (ErrStage elsewhere).
func Header(name string) (string, error) {
	v, err := headerAt(name, 0)
	return string(v), err
}

// HeaderValues returns the values of every header field with this name,
// in message order; none is an empty list, not an error.
func HeaderValues(name string) ([]string, error) {
	var values []string
	for i := uint32(0); ; i++ {
		v, err := headerAt(name, i)
		if errors.Is(err, ErrNotFound) {
			return values, nil
		}
		if err != nil {
			return nil, err
		}
		values = append(values, string(v))
	}
}

func headerAt(name string, index uint32) ([]byte, error) {
	return fetch(abi.FuncHeaderGet, func(i Imports, buf []byte) int32 { return i.HeaderGet(name, index, buf) })
}

// HeaderBlock returns the message's header block as received, each line
// ending in CRLF, without the empty line that ends it.
func HeaderBlock() ([]byte, error) {
	return fetch(abi.FuncHeaders, func(i Imports, buf []byte) int32 { return i.Headers(buf) })
}

// Headers returns every header field in message order.
func Headers() ([]Field, error) {
	block, err := HeaderBlock()
	if err != nil {
		return nil, err
	}
	return abi.ParseHeader(block), nil
}

// BodySize returns the length of the message's body in bytes. It needs the
// "body" capability and works at the data stage only.
func BodySize() (int, error) {
	n, err := call(abi.FuncBodySize, func(i Imports) int32 { return i.BodySize() })
	return int(n), err
}

// ReadBodyAt reads the body from offset off into p, as io.ReaderAt does:
// it returns io.EOF when it reads less than len(p) because the body ends.
// Only what is read crosses from the host, so a plugin that reads the
// first kilobytes of a large message pays for those alone.
func ReadBodyAt(p []byte, off int64) (int, error) {
	if off < 0 || off > 1<<31-1 {
		return 0, fmt.Errorf("sdk: %s: offset %d: %w", abi.FuncBodyRead, off, ErrInvalid)
	}
	read := 0
	for read < len(p) {
		chunk := p[read:]
		if len(chunk) > 1<<30 {
			chunk = chunk[:1<<30]
		}
		n, err := call(abi.FuncBodyRead, func(i Imports) int32 { return i.BodyRead(uint32(off)+uint32(read), chunk) })
		if err != nil {
			return read, err
		}
		if n == 0 {
			return read, io.EOF
		}
		read += int(n)
	}
	return read, nil
}

// Body returns a reader of the message's body from its start.
func Body() io.Reader { return &bodyReader{} }

type bodyReader struct{ off int64 }

func (r *bodyReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := ReadBodyAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil // io.Reader: report the end on the next call
	}
	return n, err
}

// ReadBody returns the whole body.
func ReadBody() ([]byte, error) {
	size, err := BodySize()
	if err != nil {
		return nil, err
	}
	b := make([]byte, size)
	n, err := ReadBodyAt(b, 0)
	if err == io.EOF {
		err = nil
	}
	return b[:n], err
}

// Lookup asks the gateway's resolver (and its cache) for the records of
// type qtype (abi.TypeA, TypeAAAA, TypeTXT, TypeMX or TypePTR) at name, in
// the text forms sdk/ABI.md gives. A name that does not exist is
// ErrNotFound; one without records of the type is an empty list. It needs
// the "dns" capability; each call of a plugin may make a few lookups
// (ErrBudget after that) and they end at the call's deadline.
func Lookup(qtype uint16, name string) ([]string, error) {
	b, err := fetch(abi.FuncDNSLookup, func(i Imports, buf []byte) int32 { return i.DNSLookup(qtype, name, buf) })
	if err != nil {
		return nil, err
	}
	list, err := abi.DecodeStrings(b)
	if err != nil {
		return nil, fmt.Errorf("sdk: %s: %w", abi.FuncDNSLookup, err)
	}
	return list, nil
}

// Answer is one name's answer of LookupMany: its records, as Lookup gives
// them, or why there are none (ErrNotFound, ErrTemporary, ErrBudget, ...).
type Answer struct {
	Records []string
	Err     error
}

// LookupMany looks up the records of type qtype at each of names at the
// same time, and waits for the slowest: a plugin is single-threaded, and
// this is how it asks a few lists at once. Each name counts as one lookup
// against the call's budget; at most abi.MaxLookupMany names. The answers
// come in the order of names. The error is for the call as a whole (the
// "dns" capability not granted, too many names, ...).
func LookupMany(qtype uint16, names []string) ([]Answer, error) {
	i := imports
	if i == nil {
		return nil, fmt.Errorf("sdk: %s: %w", abi.FuncDNSLookupMany, ErrNoHost)
	}
	many, ok := i.(LookupManyImports)
	if !ok {
		answers := make([]Answer, len(names))
		for n, name := range names {
			answers[n].Records, answers[n].Err = Lookup(qtype, name)
		}
		return answers, nil
	}
	list := abi.AppendStrings(nil, names)
	b, err := fetch(abi.FuncDNSLookupMany, func(_ Imports, buf []byte) int32 { return many.DNSLookupMany(qtype, list, buf) })
	if err != nil {
		return nil, err
	}
	parts, err := abi.DecodeStrings(b)
	if err == nil && len(parts) != len(names) {
		err = abi.ErrMalformed
	}
	if err != nil {
		return nil, fmt.Errorf("sdk: %s: %w", abi.FuncDNSLookupMany, err)
	}
	answers := make([]Answer, len(names))
	for n, p := range parts {
		records, code, err := abi.DecodeLookupAnswer([]byte(p))
		switch {
		case err != nil:
			return nil, fmt.Errorf("sdk: %s: %w", abi.FuncDNSLookupMany, err)
		case code < 0:
			answers[n].Err = hostError(abi.FuncDNSLookup, code)
		default:
			answers[n].Records = records
		}
	}
	return answers, nil
}

// LookupTXT returns the TXT records at name, each one's strings joined.
func LookupTXT(name string) ([]string, error) { return Lookup(abi.TypeTXT, name) }

// LookupIP returns the addresses of name: network "ip4" asks for A
// records, "ip6" for AAAA, and "ip" for both, which is two lookups.
func LookupIP(network, name string) ([]netip.Addr, error) {
	var types []uint16
	switch network {
	case "ip4":
		types = []uint16{abi.TypeA}
	case "ip6":
		types = []uint16{abi.TypeAAAA}
	case "ip":
		types = []uint16{abi.TypeA, abi.TypeAAAA}
	default:
		return nil, fmt.Errorf("sdk: LookupIP: network %q: %w", network, ErrInvalid)
	}
	var addrs []netip.Addr
	for _, t := range types {
		list, err := Lookup(t, name)
		if err != nil {
			return nil, err
		}
		for _, s := range list {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("sdk: LookupIP: the host answered %q: %w", s, err)
			}
			addrs = append(addrs, a)
		}
	}
	return addrs, nil
}

// MX is a mail exchanger.
type MX struct {
	Host string // without the final dot
	Pref uint16
}

// LookupMX returns the MX records of name, in the order the host gave.
func LookupMX(name string) ([]MX, error) {
	list, err := Lookup(abi.TypeMX, name)
	if err != nil {
		return nil, err
	}
	mxs := make([]MX, 0, len(list))
	for _, s := range list {
		pref, host, _ := strings.Cut(s, " ")
		p, err := strconv.ParseUint(pref, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("sdk: LookupMX: the host answered %q", s)
		}
		mxs = append(mxs, MX{Host: host, Pref: uint16(p)})
	}
	return mxs, nil
}

// LookupAddr returns the names that addr's reverse DNS (PTR) records give.
// They are not verified: the request's ClientName is the gateway's
// verified name of the client.
func LookupAddr(addr netip.Addr) ([]string, error) {
	return Lookup(abi.TypePTR, ReverseName(addr))
}

// ReverseName is the name under in-addr.arpa or ip6.arpa at which addr's
// PTR records are found; also how DNS blocklists are asked ("ReverseName
// minus the suffix, plus the list's zone").
func ReverseName(addr netip.Addr) string {
	addr = addr.Unmap()
	var b strings.Builder
	if addr.Is4() {
		a := addr.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa")
		return b.String()
	}
	a := addr.As16()
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[a[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[a[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa")
	return b.String()
}

// KVGet returns the value stored under key, or ErrNotFound. The store is
// the plugin's own: other plugins cannot see its keys. It needs the "kv"
// capability and works at every stage.
func KVGet(key string) ([]byte, error) {
	return fetch(abi.FuncKVGet, func(i Imports, buf []byte) int32 { return i.KVGet(key, buf) })
}

// KVSet stores value under key for ttl, rounded up to whole milliseconds.
// Keys are at most abi.MaxKVKey bytes and values abi.MaxKVValue; the ttl
// must be positive. The store is bounded: ErrFull when the plugin's share
// is used up by entries that have not expired. Entries may be lost on a
// restart of the gateway: keep what must last in the plugin's config.
func KVSet(key string, value []byte, ttl time.Duration) error {
	ms := int64((ttl + time.Millisecond - 1) / time.Millisecond)
	_, err := call(abi.FuncKVSet, func(i Imports) int32 { return i.KVSet(key, value, ms) })
	return err
}

// KVDelete removes key; removing a key that is not there is no error.
func KVDelete(key string) error {
	_, err := call(abi.FuncKVDelete, func(i Imports) int32 { return i.KVDelete(key) })
	return err
}

// KVIncr adds delta (which may be negative) to the counter under key and
// returns the new value, atomically: instances of the plugin that count at
// the same time, and with a shared store the gateway's nodes, each get a
// value of their own and none is lost. A key that is not there, or has
// expired, starts at 0 and is created to expire after ttl (rounded up to
// whole milliseconds); adding to it later does not move its expiry, so a
// counter made with a window's length counts that fixed window. The value
// is the number in decimal, as KVGet reads it. ErrInvalid when the value
// under key is not a decimal number (it was set otherwise), when the sum
// would not fit in an int64, or when ttl is not positive; ErrFull when the
// store is full.
func KVIncr(key string, delta int64, ttl time.Duration) (int64, error) {
	i := imports
	if i == nil {
		return 0, fmt.Errorf("sdk: %s: %w", abi.FuncKVIncr, ErrNoHost)
	}
	n, code := i.KVIncr(key, delta, int64((ttl+time.Millisecond-1)/time.Millisecond))
	if code < 0 {
		return 0, hostError(abi.FuncKVIncr, code)
	}
	return n, nil
}

// Count adds delta (0 or more) to the plugin's counter of this name, which
// the gateway exports as a metric labelled with the plugin's name. Names
// are lower-case letters, digits and _, starting with a letter, at most
// abi.MaxCounterName bytes. It needs the "metrics" capability.
func Count(name string, delta float64) error {
	_, err := call(abi.FuncCounterAdd, func(i Imports) int32 { return i.CounterAdd(name, delta) })
	return err
}

// HTTPRequest is a request for HTTP.
type HTTPRequest = abi.HTTPRequest

// HTTPResponse is the answer of HTTP.
type HTTPResponse = abi.HTTPResponse

// HTTP sends req and returns the response, whatever its status: redirects
// are not followed. It needs the "http" capability, and the URL's host and
// port must be in the plugin's http_hosts (ErrNotAllowed otherwise). A
// response over http_max_response is ErrTooLarge; none within http_timeout
// or the call's deadline, ErrTimeout; a refused connection or a TLS
// failure, ErrTemporary. Each call of a plugin may send a few requests
// (ErrBudget after that), at any stage. While configuring nothing is sent:
// an allowed URL is ErrStage, so that Configure can check a URL setting.
func HTTP(req *HTTPRequest) (*HTTPResponse, error) {
	enc := abi.AppendHTTPRequest(nil, req)
	b, err := fetch(abi.FuncHTTPRequest, func(i Imports, buf []byte) int32 { return i.HTTPRequest(enc, buf) })
	if err != nil {
		return nil, err
	}
	var resp HTTPResponse
	if err := abi.DecodeHTTPResponse(b, &resp); err != nil {
		return nil, fmt.Errorf("sdk: %s: %w", abi.FuncHTTPRequest, err)
	}
	return &resp, nil
}

// CheckURL reports whether HTTP may send requests to url: call it from
// Configure, where it sends nothing, to refuse a URL setting that the
// plugin's http_hosts do not allow when the plugin loads rather than at
// the first message. It returns nil for an allowed URL, ErrNotAllowed for
// one outside http_hosts, ErrDenied without the "http" capability.
func CheckURL(url string) error {
	_, err := HTTP(&HTTPRequest{Method: "GET", URL: url})
	if errors.Is(err, ErrStage) {
		return nil
	}
	if err == nil {
		return fmt.Errorf("sdk: CheckURL: call it from Configure only, where nothing is sent")
	}
	return err
}
