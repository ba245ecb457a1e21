//go:build wasip1

package sdk

import "unsafe"

// The host functions of module "sluice" beyond log (sdk/ABI.md). The linker
// keeps only those a plugin calls, so a plugin imports what it uses and no
// more.

//go:wasmimport sluice header_get
func hostHeaderGet(name unsafe.Pointer, nameLen, index uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice headers
func hostHeaders(buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice body_size
func hostBodySize() int32

//go:wasmimport sluice body_read
func hostBodyRead(offset uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice dns_lookup
func hostDNSLookup(qtype uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice dns_lookup_many
func hostDNSLookupMany(qtype uint32, names unsafe.Pointer, namesLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice kv_get
func hostKVGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice kv_set
func hostKVSet(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32, ttlMillis int64) int32

//go:wasmimport sluice kv_delete
func hostKVDelete(key unsafe.Pointer, keyLen uint32) int32

//go:wasmimport sluice kv_incr
func hostKVIncr(key unsafe.Pointer, keyLen uint32, delta, ttlMillis int64, out unsafe.Pointer) int32

//go:wasmimport sluice counter_add
func hostCounterAdd(name unsafe.Pointer, nameLen uint32, delta float64) int32

//go:wasmimport sluice http_request
func hostHTTPRequest(req unsafe.Pointer, reqLen uint32, buf unsafe.Pointer, bufCap uint32) int32

func defaultImports() Imports { return wasmImports{} }

// wasmImports passes Go strings and slices to the host as (pointer,
// length) pairs of linear memory.
type wasmImports struct{}

func str(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}
func buf(b []byte) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}

func (wasmImports) HeaderGet(name string, index uint32, b []byte) int32 {
	np, nl := str(name)
	bp, bl := buf(b)
	return hostHeaderGet(np, nl, index, bp, bl)
}

func (wasmImports) Headers(b []byte) int32 {
	bp, bl := buf(b)
	return hostHeaders(bp, bl)
}

func (wasmImports) BodySize() int32 { return hostBodySize() }

func (wasmImports) BodyRead(offset uint32, b []byte) int32 {
	bp, bl := buf(b)
	return hostBodyRead(offset, bp, bl)
}

func (wasmImports) DNSLookup(qtype uint16, name string, b []byte) int32 {
	np, nl := str(name)
	bp, bl := buf(b)
	return hostDNSLookup(uint32(qtype), np, nl, bp, bl)
}

func (wasmImports) DNSLookupMany(qtype uint16, names []byte, b []byte) int32 {
	np, nl := buf(names)
	bp, bl := buf(b)
	return hostDNSLookupMany(uint32(qtype), np, nl, bp, bl)
}

func (wasmImports) KVGet(key string, b []byte) int32 {
	kp, kl := str(key)
	bp, bl := buf(b)
	return hostKVGet(kp, kl, bp, bl)
}

func (wasmImports) KVSet(key string, value []byte, ttlMillis int64) int32 {
	kp, kl := str(key)
	vp, vl := buf(value)
	return hostKVSet(kp, kl, vp, vl, ttlMillis)
}

func (wasmImports) KVDelete(key string) int32 {
	kp, kl := str(key)
	return hostKVDelete(kp, kl)
}

func (wasmImports) KVIncr(key string, delta, ttlMillis int64) (int64, int32) {
	kp, kl := str(key)
	var n int64 // linear memory is little-endian, as the host writes it
	code := hostKVIncr(kp, kl, delta, ttlMillis, unsafe.Pointer(&n))
	return n, code
}

func (wasmImports) CounterAdd(name string, delta float64) int32 {
	np, nl := str(name)
	return hostCounterAdd(np, nl, delta)
}

func (wasmImports) HTTPRequest(req []byte, b []byte) int32 {
	rp, rl := buf(req)
	bp, bl := buf(b)
	return hostHTTPRequest(rp, rl, bp, bl)
}
