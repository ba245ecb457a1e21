package abi

import (
	"bytes"
	"strings"
)

// Names of the host functions beyond log, each in module HostModule and
// each granted per plugin by a Capability. Every one returns an i32: a
// length (0 or more) or one of the Err codes below.
const (
	// FuncHeaderGet (name_ptr, name_len, index, buf_ptr, buf_cap i32) -> i32
	// writes the unfolded value of the index-th (from 0) header field of
	// that name (any case), if it fits, and returns its length.
	FuncHeaderGet = "header_get"
	// FuncHeaders (buf_ptr, buf_cap i32) -> i32 writes the whole header
	// block, if it fits, and returns its length.
	FuncHeaders = "headers"
	// FuncBodySize () -> i32 returns the body's length in bytes.
	FuncBodySize = "body_size"
	// FuncBodyRead (offset, buf_ptr, buf_cap i32) -> i32 writes the body's
	// bytes from offset, as many as fit, and returns how many it wrote: 0
	// at the end of the body.
	FuncBodyRead = "body_read"
	// FuncDNSLookup (qtype, name_ptr, name_len, buf_ptr, buf_cap i32) -> i32
	// looks name up and writes the answers as a list of strings, if it
	// fits, and returns its length.
	FuncDNSLookup = "dns_lookup"
	// FuncDNSLookupMany (qtype, names_ptr, names_len, buf_ptr, buf_cap i32)
	// -> i32 looks up every name of a list of strings at the same time
	// and writes one answer per name (AppendLookupAnswer), as a list of
	// strings, if it fits, and returns its length.
	FuncDNSLookupMany = "dns_lookup_many"
	// FuncKVGet (key_ptr, key_len, buf_ptr, buf_cap i32) -> i32 writes the
	// value stored under key, if it fits, and returns its length.
	FuncKVGet = "kv_get"
	// FuncKVSet (key_ptr, key_len, val_ptr, val_len i32, ttl_ms i64) -> i32
	// stores the value under key for ttl_ms milliseconds; 0 on success.
	FuncKVSet = "kv_set"
	// FuncKVDelete (key_ptr, key_len i32) -> i32 removes key; 0 on success,
	// also when there was no such key.
	FuncKVDelete = "kv_delete"
	// FuncKVIncr (key_ptr, key_len i32, delta, ttl_ms i64, out_ptr i32) -> i32
	// adds delta to the decimal counter under key, creating it at 0 with
	// ttl_ms when it is not there, and writes the new value at out_ptr as
	// 8 bytes little-endian; 0 on success.
	FuncKVIncr = "kv_incr"
	// FuncCounterAdd (name_ptr, name_len i32, delta f64) -> i32 adds delta
	// to the plugin's counter of that name; 0 on success.
	FuncCounterAdd = "counter_add"
	// FuncHTTPRequest (req_ptr, req_len, buf_ptr, buf_cap i32) -> i32
	// sends the HTTPRequest encoded at req to one of the plugin's allowed
	// hosts and writes the HTTPResponse, if it fits, and returns its
	// length.
	FuncHTTPRequest = "http_request"
)

// Error codes that host functions return instead of a length.
const (
	ErrDenied    int32 = -1 // the plugin was not granted the function's capability
	ErrStage     int32 = -2 // not available at this stage (headers and body: data only)
	ErrNotFound  int32 = -3 // no such header field or key; the DNS name does not exist
	ErrMemory    int32 = -4 // an argument lies outside the guest's memory
	ErrInvalid   int32 = -5 // an argument is not acceptable (a name, a type, a size, a TTL)
	ErrBudget    int32 = -6 // the call's DNS lookups or HTTP requests, or its time for them, are used up
	ErrTemporary int32 = -7 // the lookup or the store failed; trying again later may work
	ErrFull      int32 = -8 // the plugin's key-value store is full
	// ErrNotAllowed: the URL's host and port are not in the plugin's
	// http_hosts, or its scheme is neither http nor https.
	ErrNotAllowed int32 = -9
	ErrTooLarge   int32 = -10 // the HTTP response is larger than the plugin's http_max_response
	ErrTimeout    int32 = -11 // no whole HTTP response within http_timeout or the call's deadline
)

var errNames = map[int32]string{
	ErrDenied: "capability not granted", ErrStage: "not available at this stage",
	ErrNotFound: "not found", ErrMemory: "outside the guest's memory",
	ErrInvalid: "invalid argument", ErrBudget: "budget used up",
	ErrTemporary: "temporary failure", ErrFull: "store full",
	ErrNotAllowed: "host not allowed", ErrTooLarge: "response too large", ErrTimeout: "timed out",
}

// ErrorText describes a host function's error code.
func ErrorText(code int32) string {
	if s, ok := errNames[code]; ok {
		return s
	}
	if code < 0 {
		return "unknown error -" + itoa(uint64(-int64(code)))
	}
	return "unknown error " + itoa(uint64(code))
}

// Limits on the arguments of host functions; beyond them a call returns
// ErrInvalid.
const (
	MaxKVKey       = 256      // bytes of a key
	MaxKVValue     = 64 << 10 // bytes of a value
	MaxCounterName = 64       // bytes of a counter's name
)

// Capability is a group of host functions that gateway.toml grants a
// plugin by name. FuncLog needs none.
type Capability uint8

const (
	CapHeaders Capability = 1 << iota // FuncHeaderGet, FuncHeaders
	CapBody                           // FuncBodySize, FuncBodyRead
	CapDNS                            // FuncDNSLookup, FuncDNSLookupMany
	CapKV                             // FuncKVGet, FuncKVSet, FuncKVDelete, FuncKVIncr
	CapMetrics                        // FuncCounterAdd
	CapHTTP                           // FuncHTTPRequest
)

var capNames = []struct {
	c    Capability
	name string
}{
	{CapHeaders, "headers"}, {CapBody, "body"}, {CapDNS, "dns"}, {CapKV, "kv"}, {CapMetrics, "metrics"},
	{CapHTTP, "http"},
}

// ParseCapability returns the capability with the given name.
func ParseCapability(name string) (Capability, bool) {
	for _, c := range capNames {
		if c.name == name {
			return c.c, true
		}
	}
	return 0, false
}

// CapabilityNames lists the names of every capability.
func CapabilityNames() []string {
	names := make([]string, len(capNames))
	for i, c := range capNames {
		names[i] = c.name
	}
	return names
}

// Has reports whether every capability of o is in c.
func (c Capability) Has(o Capability) bool { return c&o == o }

func (c Capability) String() string {
	var names []string
	for _, n := range capNames {
		if c.Has(n.c) {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// DNS record types that FuncDNSLookup answers, and how each answer is
// written: A and AAAA as an address in text form; TXT as the record's
// strings joined, raw bytes; MX as "preference host"; PTR as a name. Names
// are written without the final dot.
const (
	TypeA    = 1
	TypeTXT  = 16
	TypeMX   = 15
	TypePTR  = 12
	TypeAAAA = 28
)

// MaxLookupMany is the most names one FuncDNSLookupMany call may ask for;
// more is ErrInvalid. Each name also counts against the call's budget of
// lookups.
const MaxLookupMany = 16

// AppendLookupAnswer appends one name's answer of FuncDNSLookupMany: the
// byte 0 and the records as FuncDNSLookup writes them (AppendStrings), or
// for a name whose lookup failed the one byte -code (3 for ErrNotFound,
// 7 for ErrTemporary, ...).
func AppendLookupAnswer(b []byte, records []string, code int32) []byte {
	if code < 0 {
		return append(b, byte(-code))
	}
	return AppendStrings(append(b, 0), records)
}

// DecodeLookupAnswer decodes one name's answer of FuncDNSLookupMany into
// its records, or the error code of its lookup.
func DecodeLookupAnswer(b []byte) (records []string, code int32, err error) {
	switch {
	case len(b) == 0:
		return nil, 0, ErrMalformed
	case b[0] != 0:
		if len(b) != 1 {
			return nil, 0, ErrMalformed
		}
		return nil, -int32(b[0]), nil
	}
	records, err = DecodeStrings(b[1:])
	return records, 0, err
}

// AppendStrings appends a list of strings in the ABI's encoding: its count
// as a varint, then each string's length as a varint and its bytes. It is
// how FuncDNSLookup writes its answers.
func AppendStrings(b []byte, list []string) []byte {
	e := encoder{b}
	e.uint(uint64(len(list)))
	for _, s := range list {
		e.str(s)
	}
	return e.b
}

// DecodeStrings decodes a list written by AppendStrings.
func DecodeStrings(b []byte) ([]string, error) {
	d := decoder{b: b}
	list := d.strs()
	return list, d.err
}

// ParseHeader splits a header block into its fields, each with its name as
// written and its value unfolded: the text after the colon without the
// line breaks of continuation lines (RFC 5322 §2.2.3) and without
// whitespace at either end. Nothing else is decoded. Lines that are not a
// field are skipped. FuncHeaderGet answers from the same split.
func ParseHeader(block []byte) []Header { return ParseHeaderFunc(block, nil) }

// ParseHeaderFunc is ParseHeader keeping only the fields whose name, as
// written, keep accepts (all if keep is nil). The others are neither
// copied nor unfolded, which spares a plugin that reads a few fields the
// work of every DKIM signature and ARC set. keep must not retain name,
// which is part of block.
func ParseHeaderFunc(block []byte, keep func(name []byte) bool) []Header {
	var fields []Header
	for len(block) > 0 {
		end := lineEnd(block)
		for end < len(block) && (block[end] == ' ' || block[end] == '\t') {
			end += lineEnd(block[end:])
		}
		raw := block[:end]
		block = block[end:]
		colon := bytes.IndexByte(raw, ':')
		if colon <= 0 {
			continue
		}
		name := bytes.TrimRight(raw[:colon], " \t")
		if keep != nil && !keep(name) {
			continue
		}
		fields = append(fields, Header{Name: string(name), Value: unfold(raw[colon+1:])})
	}
	return fields
}

func lineEnd(b []byte) int {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return i + 1
	}
	return len(b)
}

// FieldValue is the value of one raw header field (its name, colon, value
// and line ends) as ParseHeader reads it: what follows the first colon,
// unfolded, spaces and tabs trimmed. The gateway's header_get answers with
// it, so that a plugin reads the same value either way.
func FieldValue(raw []byte) string {
	_, v, _ := bytes.Cut(raw, []byte(":"))
	return unfold(v)
}

// unfold removes every CR and LF, which in a field only end its lines, and
// trims the ends.
func unfold(v []byte) string {
	var b strings.Builder
	b.Grow(len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return strings.Trim(b.String(), " \t")
}
