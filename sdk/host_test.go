package sdk

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// fakeHost implements Imports over plain data with the ABI's rules: write
// only if it fits, return the needed length, negative codes for errors.
type fakeHost struct {
	header, body []byte
	dns          map[string][]string // "type name" → answers; absent: NXDOMAIN
	kv           map[string][]byte
	ttl          map[string]int64
	counters     map[string]float64
	deny         int32 // when not 0, every call returns it
	bodyCopied   int   // bytes BodyRead wrote
	httpSent     int   // HTTPRequest calls answered
}

func (f *fakeHost) fit(data, buf []byte) int32 {
	if f.deny != 0 {
		return f.deny
	}
	if len(data) <= len(buf) {
		copy(buf, data)
	}
	return int32(len(data))
}

func (f *fakeHost) HeaderGet(name string, index uint32, buf []byte) int32 {
	var n uint32
	for _, h := range abi.ParseHeader(f.header) {
		if strings.EqualFold(h.Name, name) {
			if n == index {
				return f.fit([]byte(h.Value), buf)
			}
			n++
		}
	}
	if f.deny != 0 {
		return f.deny
	}
	return abi.ErrNotFound
}

func (f *fakeHost) Headers(buf []byte) int32 { return f.fit(f.header, buf) }
func (f *fakeHost) BodySize() int32 {
	if f.deny != 0 {
		return f.deny
	}
	return int32(len(f.body))
}

func (f *fakeHost) BodyRead(offset uint32, buf []byte) int32 {
	if f.deny != 0 {
		return f.deny
	}
	if int(offset) >= len(f.body) {
		return 0
	}
	n := copy(buf, f.body[offset:])
	f.bodyCopied += n
	return int32(n)
}

func (f *fakeHost) DNSLookup(qtype uint16, name string, buf []byte) int32 {
	answers, ok := f.dns[itoa(qtype)+" "+name]
	if !ok && f.deny == 0 {
		return abi.ErrNotFound
	}
	return f.fit(abi.AppendStrings(nil, answers), buf)
}

func itoa(v uint16) string { return strconv.Itoa(int(v)) }

func (f *fakeHost) KVGet(key string, buf []byte) int32 {
	v, ok := f.kv[key]
	if !ok && f.deny == 0 {
		return abi.ErrNotFound
	}
	return f.fit(v, buf)
}

func (f *fakeHost) KVSet(key string, value []byte, ttl int64) int32 {
	if f.deny != 0 {
		return f.deny
	}
	f.kv[key] = append([]byte(nil), value...)
	f.ttl[key] = ttl
	return 0
}

func (f *fakeHost) KVDelete(key string) int32 {
	delete(f.kv, key)
	return 0
}

// KVIncr keeps counters in decimal, as the gateway does, but never
// expires them.
func (f *fakeHost) KVIncr(key string, delta, ttl int64) (int64, int32) {
	if f.deny != 0 {
		return 0, f.deny
	}
	var n int64
	if v, ok := f.kv[key]; ok {
		var err error
		if n, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return 0, abi.ErrInvalid
		}
	} else {
		f.ttl[key] = ttl
	}
	n += delta
	f.kv[key] = []byte(strconv.FormatInt(n, 10))
	return n, 0
}

func (f *fakeHost) CounterAdd(name string, delta float64) int32 {
	if f.deny != 0 {
		return f.deny
	}
	f.counters[name] += delta
	return 0
}

// HTTPRequest answers every request with its own method and URL as the
// body, so that a test sees what crossed; stage 0 is configuring.
func (f *fakeHost) HTTPRequest(req []byte, buf []byte) int32 {
	var m abi.HTTPRequest
	if err := abi.DecodeHTTPRequest(req, &m); err != nil {
		return abi.ErrInvalid
	}
	if f.deny != 0 {
		return f.deny
	}
	f.httpSent++
	resp := abi.HTTPResponse{Status: 200, Header: m.Header, Body: []byte(m.Method + " " + m.URL + " " + string(m.Body))}
	return f.fit(abi.AppendHTTPResponse(nil, &resp), buf)
}

func installFake(t *testing.T) *fakeHost {
	f := &fakeHost{kv: map[string][]byte{}, ttl: map[string]int64{}, counters: map[string]float64{}, dns: map[string][]string{}}
	t.Cleanup(SetImports(f))
	return f
}

const testHeader = "From: a@example.test\r\n" +
	"Subject: hello\r\n  folded\tworld \r\n" +
	"Received: one\r\n" +
	"received: two\r\n"

func TestHeaders(t *testing.T) {
	f := installFake(t)
	f.header = []byte(testHeader + "X-Long: " + strings.Repeat("x", 2000) + "\r\n")

	if v, err := Header("subject"); err != nil || v != "hello  folded\tworld" {
		t.Errorf("Header(subject) = %q, %v; want the unfolded, trimmed value", v, err)
	}
	if v, err := Header("X-Long"); err != nil || v != strings.Repeat("x", 2000) {
		t.Errorf("Header(X-Long) = %d bytes, %v; want 2000 (a value larger than the first buffer)", len(v), err)
	}
	if _, err := Header("Cc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Header(Cc) error = %v, want ErrNotFound", err)
	}
	if vs, err := HeaderValues("RECEIVED"); err != nil || !reflect.DeepEqual(vs, []string{"one", "two"}) {
		t.Errorf("HeaderValues(RECEIVED) = %q, %v", vs, err)
	}
	if vs, err := HeaderValues("Cc"); err != nil || len(vs) != 0 {
		t.Errorf("HeaderValues(Cc) = %q, %v; want none and no error", vs, err)
	}
	block, err := HeaderBlock()
	if err != nil || !bytes.Equal(block, f.header) {
		t.Errorf("HeaderBlock = %q, %v", block, err)
	}
	fields, err := Headers()
	if err != nil || len(fields) != 5 || fields[1] != (Field{Name: "Subject", Value: "hello  folded\tworld"}) {
		t.Errorf("Headers = %q, %v", fields, err)
	}
}

func TestBody(t *testing.T) {
	f := installFake(t)
	var b bytes.Buffer
	for i := range 3000 {
		b.WriteString("line ")
		b.WriteByte(byte('a' + i%26))
		b.WriteString("\r\n")
	}
	f.body = b.Bytes()

	if n, err := BodySize(); err != nil || n != len(f.body) {
		t.Errorf("BodySize = %d, %v; want %d", n, err, len(f.body))
	}
	got, err := ReadBody()
	if err != nil || !bytes.Equal(got, f.body) {
		t.Errorf("ReadBody: %d bytes, %v; want %d", len(got), err, len(f.body))
	}
	// iotest checks the io.Reader contract with reads of many sizes.
	if err := iotest.TestReader(Body(), f.body); err != nil {
		t.Error(err)
	}
	p := make([]byte, 10)
	if n, err := ReadBodyAt(p, int64(len(f.body)-4)); n != 4 || err != io.EOF || !bytes.Equal(p[:n], f.body[len(f.body)-4:]) {
		t.Errorf("ReadBodyAt near the end = %d, %v; want 4 bytes and io.EOF", n, err)
	}
	if _, err := ReadBodyAt(p, -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("ReadBodyAt(-1) error = %v, want ErrInvalid", err)
	}
}

// TestBodyReadsOnlyWhatIsAsked shows that reading the first bytes of a
// large body costs one host call, not the whole body.
func TestBodyReadsOnlyWhatIsAsked(t *testing.T) {
	f := installFake(t)
	f.body = bytes.Repeat([]byte("x"), 1<<20)
	p := make([]byte, 100)
	if n, err := Body().Read(p); n != 100 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if f.bodyCopied != 100 {
		t.Errorf("the host copied %d bytes of the body for a read of 100", f.bodyCopied)
	}
}

func TestHostErrors(t *testing.T) {
	f := installFake(t)
	for code, want := range codeErrors {
		f.deny = code
		_, err := Header("Subject")
		if !errors.Is(err, want) || !strings.Contains(err.Error(), abi.FuncHeaderGet) {
			t.Errorf("code %d: Header error = %v, want %v naming %s", code, err, want, abi.FuncHeaderGet)
		}
		if err := Count("x", 1); !errors.Is(err, want) {
			t.Errorf("code %d: Count error = %v, want %v", code, err, want)
		}
		if _, err := ReadBody(); !errors.Is(err, want) {
			t.Errorf("code %d: ReadBody error = %v, want %v", code, err, want)
		}
		if _, err := HTTP(&HTTPRequest{Method: "GET", URL: "http://x.test/"}); !errors.Is(err, want) || !strings.Contains(err.Error(), abi.FuncHTTPRequest) {
			t.Errorf("code %d: HTTP error = %v, want %v", code, err, want)
		}
	}
	f.deny = -99
	if _, err := HTTP(&HTTPRequest{Method: "GET", URL: "http://x.test/"}); err == nil || !strings.Contains(err.Error(), "unknown error -99") {
		t.Errorf("unknown code: HTTP error = %v", err)
	}
	if _, err := KVGet("k"); err == nil || !strings.Contains(err.Error(), "unknown error -99") {
		t.Errorf("unknown code: error = %v", err)
	}
}

// TestHostErrorsAreMadeOnce checks that a known code's error, which a
// plugin meets on every missing field or name, is made once per function
// and reads as before; an unknown code is not kept.
func TestHostErrorsAreMadeOnce(t *testing.T) {
	err := hostError(abi.FuncDNSLookup, abi.ErrNotFound)
	if !errors.Is(err, ErrNotFound) || err.Error() != "sdk: "+abi.FuncDNSLookup+": "+ErrNotFound.Error() {
		t.Errorf("error = %v", err)
	}
	if other := hostError(abi.FuncHeaderGet, abi.ErrNotFound); !strings.Contains(other.Error(), abi.FuncHeaderGet) {
		t.Errorf("%s's error = %v", abi.FuncHeaderGet, other)
	}
	if n := testing.AllocsPerRun(100, func() { hostError(abi.FuncDNSLookup, abi.ErrNotFound) }); n != 0 {
		t.Errorf("a known error took %v allocations again, want 0", n)
	}
	hostError(abi.FuncDNSLookup, -12345)
	hostErrors.mu.Lock()
	defer hostErrors.mu.Unlock()
	if _, kept := hostErrors.made[hostErrorKey{abi.FuncDNSLookup, -12345}]; kept {
		t.Error("an unknown code's error was kept")
	}
}

func TestNoHost(t *testing.T) {
	t.Cleanup(SetImports(nil))
	if _, err := Header("Subject"); !errors.Is(err, ErrNoHost) {
		t.Errorf("Header without a host: %v, want ErrNoHost", err)
	}
	if err := KVSet("k", nil, time.Second); !errors.Is(err, ErrNoHost) {
		t.Errorf("KVSet without a host: %v, want ErrNoHost", err)
	}
}

func TestLookups(t *testing.T) {
	f := installFake(t)
	f.dns["16 example.test"] = []string{"v=spf1 -all", "other"}
	f.dns["1 example.test"] = []string{"192.0.2.1"}
	f.dns["28 example.test"] = []string{"2001:db8::1"}
	f.dns["15 example.test"] = []string{"10 mx1.example.test", "20 mx2.example.test"}
	f.dns["12 1.2.0.192.in-addr.arpa"] = []string{"host.example.test"}
	f.dns["16 empty.test"] = nil

	if txt, err := LookupTXT("example.test"); err != nil || !reflect.DeepEqual(txt, []string{"v=spf1 -all", "other"}) {
		t.Errorf("LookupTXT = %q, %v", txt, err)
	}
	if txt, err := LookupTXT("empty.test"); err != nil || len(txt) != 0 {
		t.Errorf("LookupTXT(no records) = %q, %v; want none, no error", txt, err)
	}
	if _, err := LookupTXT("nxdomain.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupTXT(nxdomain) error = %v, want ErrNotFound", err)
	}
	ips, err := LookupIP("ip", "example.test")
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	if err != nil || !reflect.DeepEqual(ips, want) {
		t.Errorf("LookupIP = %v, %v", ips, err)
	}
	if _, err := LookupIP("tcp", "example.test"); !errors.Is(err, ErrInvalid) {
		t.Errorf("LookupIP(tcp) error = %v", err)
	}
	mx, err := LookupMX("example.test")
	if err != nil || !reflect.DeepEqual(mx, []MX{{"mx1.example.test", 10}, {"mx2.example.test", 20}}) {
		t.Errorf("LookupMX = %v, %v", mx, err)
	}
	if names, err := LookupAddr(netip.MustParseAddr("192.0.2.1")); err != nil || !reflect.DeepEqual(names, []string{"host.example.test"}) {
		t.Errorf("LookupAddr = %q, %v", names, err)
	}
}

func TestReverseName(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1":          "1.2.0.192.in-addr.arpa",
		"::ffff:192.0.2.1":   "1.2.0.192.in-addr.arpa",
		"2001:db8::567:89ab": "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
	} {
		if got := ReverseName(netip.MustParseAddr(addr)); got != want {
			t.Errorf("ReverseName(%s) = %s, want %s", addr, got, want)
		}
	}
}

func TestKVAndCount(t *testing.T) {
	f := installFake(t)
	if err := KVSet("seen", []byte("1"), 1500*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if f.ttl["seen"] != 2 {
		t.Errorf("ttl of 1.5ms sent as %d ms, want 2 (rounded up)", f.ttl["seen"])
	}
	if v, err := KVGet("seen"); err != nil || string(v) != "1" {
		t.Errorf("KVGet = %q, %v", v, err)
	}
	if err := KVDelete("seen"); err != nil {
		t.Fatal(err)
	}
	if _, err := KVGet("seen"); !errors.Is(err, ErrNotFound) {
		t.Errorf("KVGet after delete: %v, want ErrNotFound", err)
	}
	for i, want := range []int64{3, 5, -1} {
		n, err := KVIncr("n", []int64{3, 2, -6}[i], 1500*time.Microsecond)
		if err != nil || n != want {
			t.Errorf("KVIncr %d = %d, %v; want %d", i, n, err, want)
		}
	}
	if v, _ := KVGet("n"); string(v) != "-1" || f.ttl["n"] != 2 {
		t.Errorf("counter stored as %q with ttl %d ms, want \"-1\" and 2 (rounded up)", v, f.ttl["n"])
	}
	KVSet("text", []byte("abc"), time.Second)
	if _, err := KVIncr("text", 1, time.Second); !errors.Is(err, ErrInvalid) {
		t.Errorf("KVIncr of a value that is no number: %v, want ErrInvalid", err)
	}
	f.deny = abi.ErrFull
	if _, err := KVIncr("n", 1, time.Second); !errors.Is(err, ErrFull) {
		t.Errorf("KVIncr of a full store: %v, want ErrFull", err)
	}
	f.deny = 0
	Count("hits", 1)
	Count("hits", 2.5)
	if f.counters["hits"] != 3.5 {
		t.Errorf("counter = %v, want 3.5", f.counters["hits"])
	}
}

// A response larger than the first buffer is fetched again: the host
// answers that from the response it kept.
func TestHTTP(t *testing.T) {
	f := installFake(t)
	body := strings.Repeat("x", 3000)
	resp, err := HTTP(&HTTPRequest{Method: "POST", URL: "http://127.0.0.1:11333/checkv2",
		Header: []Field{{Name: "Rcpt", Value: "a@example.org"}}, Body: []byte(body)})
	if err != nil || resp.Status != 200 || string(resp.Body) != "POST http://127.0.0.1:11333/checkv2 "+body ||
		len(resp.Header) != 1 || resp.Header[0].Value != "a@example.org" {
		t.Fatalf("HTTP = %+v, %v", resp, err)
	}
	if f.httpSent != 2 {
		t.Errorf("%d calls of the host, want 2 (the first buffer was too small)", f.httpSent)
	}
	// Outside configuring, CheckURL would send a request: it says so.
	if err := CheckURL("http://127.0.0.1:11333/"); err == nil || !strings.Contains(err.Error(), "Configure only") {
		t.Errorf("CheckURL outside Configure = %v", err)
	}
	f.deny = abi.ErrStage
	if err := CheckURL("http://127.0.0.1:11333/"); err != nil {
		t.Errorf("CheckURL of an allowed URL = %v", err)
	}
	f.deny = abi.ErrNotAllowed
	if err := CheckURL("http://192.0.2.1/"); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("CheckURL of a URL not allowed = %v", err)
	}
}
