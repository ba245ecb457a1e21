// Command hostcalls is a test plugin that calls host functions as the
// request's HELO string tells it, and reports each result as an added
// header field "X-Result: ...". Commands are separated by ";":
//
//	header NAME INDEX CAP   raw header_get with a buffer of CAP bytes
//	headers CAP             raw headers
//	bodysize                raw body_size
//	bodyread OFFSET CAP     raw body_read
//	bodyall CAP             the whole body by raw body_read, CAP bytes at a time: its length
//	dns TYPE NAME CAP       raw dns_lookup
//	kvget KEY CAP           raw kv_get
//	kvset KEY VALUE TTLMS   raw kv_set
//	kvdel KEY               raw kv_delete
//	kvincr KEY DELTA TTLMS  raw kv_incr: "n=" the result and, on success, " v=" the new value
//	count NAME DELTA        raw counter_add
//	badptr                  header_get with a buffer outside memory
//	repeat N COMMAND...     the command N times, reporting the last result
//	hot N FUNC              FUNC (header, kvget, count, dns, bodysize) N times
//	                        with fixed arguments and no allocation: "n=" the last result
//	sdk-header NAME         sdk.Header
//	sdk-body                sdk.ReadBody, reported as its length and the start of its SHA-256
//	sdk-bodyhead N          the first N bytes through sdk.Body()
//	sdk-txt NAME            sdk.LookupTXT
//	sdk-many TYPE NAME...   sdk.LookupMany: each answer's records joined with "|", or "err=" and
//	                        its error, the answers joined with " ; "
//	sdk-kv KEY              sdk.KVGet
//	sdk-incr KEY DELTA MS   sdk.KVIncr
//
// A raw call reports "n=RESULT" and, when the answer fit, " v=" and the
// answer quoted as Go does; the answer of dns is decoded and joined with
// "|". An sdk call reports the value, quoted, or "err=" and the error.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

//go:wasmimport sluice header_get
func headerGet(name unsafe.Pointer, nameLen, index uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice headers
func headers(buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice body_size
func bodySize() int32

//go:wasmimport sluice body_read
func bodyRead(offset uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice dns_lookup
func dnsLookup(qtype uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice kv_get
func kvGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport sluice kv_set
func kvSet(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32, ttlMillis int64) int32

//go:wasmimport sluice kv_delete
func kvDelete(key unsafe.Pointer, keyLen uint32) int32

//go:wasmimport sluice kv_incr
func kvIncr(key unsafe.Pointer, keyLen uint32, delta, ttlMillis int64, out unsafe.Pointer) int32

//go:wasmimport sluice counter_add
func counterAdd(name unsafe.Pointer, nameLen uint32, delta float64) int32

type plugin struct{}

func (plugin) Configure(c *sdk.Config) error {
	c.Permit(abi.MayAddHeaders)
	return nil
}

func (plugin) run(req *sdk.Request) sdk.Verdict {
	v := sdk.Continue()
	for _, cmd := range strings.Split(req.Helo, ";") {
		if f := strings.Fields(cmd); len(f) > 0 {
			v = v.AddHeader("X-Result", do(f))
		}
	}
	return v
}

func (p plugin) Connect(r *sdk.Request) sdk.Verdict { return p.run(r) }
func (p plugin) Mail(r *sdk.Request) sdk.Verdict    { return p.run(r) }
func (p plugin) Rcpt(r *sdk.Request) sdk.Verdict    { return p.run(r) }
func (p plugin) Data(r *sdk.Request) sdk.Verdict    { return p.run(r) }

func str(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func num(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}

// raw reports a raw call's result and, if it fit, the answer in buf (nil
// for a function that answers with a number only).
func raw(n int32, buf []byte) string {
	out := "n=" + strconv.Itoa(int(n))
	if buf != nil && n >= 0 && int(n) <= len(buf) {
		out += " v=" + strconv.Quote(string(buf[:n]))
	}
	return out
}

func sdkResult(v string, err error) string {
	if err != nil {
		return "err=" + err.Error()
	}
	return strconv.Quote(v)
}

func do(f []string) string {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch f[0] {
	case "hot":
		return "n=" + strconv.Itoa(int(hot(num(arg(1)), arg(2))))
	case "repeat":
		var out string
		for range num(arg(1)) {
			out = do(f[2:])
		}
		return out
	case "header":
		buf := make([]byte, num(arg(3)))
		np, nl := str(arg(1))
		return raw(headerGet(np, nl, num(arg(2)), unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf))), buf)
	case "headers":
		buf := make([]byte, num(arg(1)))
		return raw(headers(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf))), buf)
	case "bodysize":
		return raw(bodySize(), nil)
	case "bodyread":
		buf := make([]byte, num(arg(2)))
		n := bodyRead(num(arg(1)), unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
		return raw(n, buf)
	case "bodyall":
		buf := make([]byte, num(arg(1)))
		total := uint32(0)
		for {
			n := bodyRead(total, unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
			if n <= 0 {
				return raw(n, nil) + " total=" + strconv.Itoa(int(total))
			}
			total += uint32(n)
		}
	case "dns":
		buf := make([]byte, num(arg(3)))
		np, nl := str(arg(2))
		n := dnsLookup(num(arg(1)), np, nl, unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
		if n < 0 || int(n) > len(buf) {
			return raw(n, nil)
		}
		list, err := abi.DecodeStrings(buf[:n])
		if err != nil {
			return "n=" + strconv.Itoa(int(n)) + " undecodable"
		}
		return "n=" + strconv.Itoa(int(n)) + " v=" + strconv.Quote(strings.Join(list, "|"))
	case "kvget":
		buf := make([]byte, num(arg(2)))
		kp, kl := str(arg(1))
		return raw(kvGet(kp, kl, unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf))), buf)
	case "kvset":
		kp, kl := str(arg(1))
		vp, vl := str(arg(2))
		ttl, _ := strconv.ParseInt(arg(3), 10, 64)
		return raw(kvSet(kp, kl, vp, vl, ttl), nil)
	case "kvdel":
		kp, kl := str(arg(1))
		return raw(kvDelete(kp, kl), nil)
	case "kvincr":
		kp, kl := str(arg(1))
		delta, _ := strconv.ParseInt(arg(2), 10, 64)
		ttl, _ := strconv.ParseInt(arg(3), 10, 64)
		var v int64
		n := kvIncr(kp, kl, delta, ttl, unsafe.Pointer(&v))
		if n < 0 {
			return raw(n, nil)
		}
		return raw(n, nil) + " v=" + strconv.FormatInt(v, 10)
	case "count":
		np, nl := str(arg(1))
		delta, _ := strconv.ParseFloat(arg(2), 64)
		return raw(counterAdd(np, nl, delta), nil)
	case "badptr":
		np, nl := str("Subject")
		return raw(headerGet(np, nl, 0, unsafe.Pointer(uintptr(0xfffffff0)), 64), nil)
	case "sdk-header":
		return sdkResult(sdk.Header(arg(1)))
	case "sdk-body":
		b, err := sdk.ReadBody()
		sum := sha256.Sum256(b)
		return sdkResult(strconv.Itoa(len(b))+" "+hex.EncodeToString(sum[:8]), err)
	case "sdk-bodyhead":
		b := make([]byte, num(arg(1)))
		n, err := io.ReadFull(sdk.Body(), b)
		return sdkResult(string(b[:n]), err)
	case "sdk-many":
		qtype, _ := strconv.ParseUint(arg(1), 10, 16)
		answers, err := sdk.LookupMany(uint16(qtype), f[2:])
		if err != nil {
			return "err=" + err.Error()
		}
		var out []string
		for _, a := range answers {
			if a.Err != nil {
				out = append(out, "err="+a.Err.Error())
				continue
			}
			out = append(out, strings.Join(a.Records, "|"))
		}
		return strings.Join(out, " ; ")
	case "sdk-txt":
		list, err := sdk.LookupTXT(arg(1))
		return sdkResult(strings.Join(list, "|"), err)
	case "sdk-incr":
		delta, _ := strconv.ParseInt(arg(2), 10, 64)
		ms, _ := strconv.ParseInt(arg(3), 10, 64)
		n, err := sdk.KVIncr(arg(1), delta, time.Duration(ms)*time.Millisecond)
		return sdkResult(strconv.FormatInt(n, 10), err)
	case "sdk-kv":
		v, err := sdk.KVGet(arg(1))
		return sdkResult(string(v), err)
	}
	return "unknown command " + f[0]
}

var hotBuf = make([]byte, 256)

// hot calls a host function n times as cheaply as a guest can, for
// benchmarks of the host side.
func hot(n uint32, fn string) int32 {
	bp, bl := unsafe.Pointer(unsafe.SliceData(hotBuf)), uint32(len(hotBuf))
	var r int32
	switch fn {
	case "header":
		np, nl := str("Subject")
		for range n {
			r = headerGet(np, nl, 0, bp, bl)
		}
	case "kvget":
		kp, kl := str("k")
		for range n {
			r = kvGet(kp, kl, bp, bl)
		}
	case "count":
		np, nl := str("hits")
		for range n {
			r = counterAdd(np, nl, 1)
		}
	case "dns":
		np, nl := str("example.test")
		for range n {
			r = dnsLookup(abi.TypeTXT, np, nl, bp, bl)
		}
	case "bodysize":
		for range n {
			r = bodySize()
		}
	}
	return r
}

func init() { sdk.Register(plugin{}) }

func main() {}
