package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero/api"
)

const allCaps = abi.CapHeaders | abi.CapBody | abi.CapDNS | abi.CapKV | abi.CapMetrics

// hostcallsSpec is the hostcalls test plugin, which runs the commands in a
// request's HELO and reports each result as an X-Result header.
func hostcallsSpec(t testing.TB, name string, caps abi.Capability) Spec {
	return Spec{
		Name:         name,
		Path:         wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/hostcalls"),
		Instances:    1,
		Capabilities: caps,
		// It imports every host function, to test each granted or not.
		ungranted: true,
	}
}

// results runs commands at a stage and returns the plugin's report, one
// line per command. The plugin must not fail: a host function refuses
// with an error code, never a trap.
func results(t *testing.T, c *Chain, st abi.Stage, msg *Message, commands ...string) []string {
	t.Helper()
	req := &abi.Request{Stage: st, SessionID: "s1", ClientIP: "127.0.0.1", Helo: strings.Join(commands, ";")}
	o := c.Run(context.Background(), req, msg)
	if len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil {
		t.Fatalf("%s: %+v: want one clean verdict", commands, o.Verdicts)
	}
	var out []string
	for _, h := range o.AddHeaders {
		out = append(out, h.Value)
	}
	if len(out) != len(commands) {
		t.Fatalf("%d results for %d commands: %q", len(out), len(commands), out)
	}
	return out
}

// expect checks each command's result.
func expect(t *testing.T, c *Chain, st abi.Stage, msg *Message, cases [][2]string) {
	t.Helper()
	var commands []string
	for _, cs := range cases {
		commands = append(commands, cs[0])
	}
	got := results(t, c, st, msg, commands...)
	for i, cs := range cases {
		if got[i] != cs[1] {
			t.Errorf("%s at %s: got %s, want %s", cs[0], st, got[i], cs[1])
		}
	}
}

const testMessage = "Received: from a\r\n" +
	"Subject: Hello\r\n  there\r\n" +
	"received: from b\r\n" +
	"\r\n" +
	"line one\r\nline two\r\n"

func TestHeadersAndBody(t *testing.T) {
	h, _ := newHost(t)
	c := NewChain(load(t, h, hostcallsSpec(t, "hc", abi.CapHeaders|abi.CapBody)))
	msg := NewMessage([]byte(strings.ReplaceAll(testMessage, "\r\n", "\n"))) // LF in, CRLF out
	header := "Received: from a\r\nSubject: Hello\r\n  there\r\nreceived: from b\r\n"
	expect(t, c, abi.StageData, msg, [][2]string{
		// Unfolding removes the line break only (RFC 5322 §2.2.3).
		{"header subject 0 64", `n=12 v="Hello  there"`},
		{"header RECEIVED 1 64", `n=6 v="from b"`},
		{"header Received 2 64", "n=-3"}, // no third one
		{"header Cc 0 64", "n=-3"},
		{"header Subject 0 5", "n=12"}, // too small: the length needed, nothing written
		{"header Subject 0 12", `n=12 v="Hello  there"`},
		{"headers 4096", fmt.Sprintf("n=%d v=%q", len(header), header)},
		{"headers 10", fmt.Sprintf("n=%d", len(header))},
		{"bodysize", "n=20"},
		{"bodyread 0 6", `n=6 v="line o"`},
		{"bodyread 15 100", `n=5 v="two\r\n"`},
		{"bodyread 20 100", "n=0 v=\"\""},
		{"bodyread 4000000 100", "n=0 v=\"\""},
		{"badptr", "n=-4"},
		{"sdk-header subject", `"Hello  there"`},
		{"sdk-body", `"20 ` + sha256Prefix("line one\r\nline two\r\n") + `"`},
		{"sdk-bodyhead 4", `"line"`},
	})
}

func TestHostFunctionsNotGranted(t *testing.T) {
	h, _ := newHost(t)
	none := NewChain(load(t, h, hostcallsSpec(t, "none", 0)))
	msg := NewMessage([]byte(testMessage))
	all := [][2]string{
		{"header Subject 0 64", "n=-1"},
		{"headers 64", "n=-1"},
		{"bodysize", "n=-1"},
		{"bodyread 0 64", "n=-1"},
		{"dns 16 example.test 64", "n=-1"},
		{"kvget k 64", "n=-1"},
		{"kvset k v 1000", "n=-1"},
		{"kvdel k", "n=-1"},
		{"kvincr k 1 1000", "n=-1"},
		{"count hits 1", "n=-1"},
		{"sdk-header Subject", "err=sdk: header_get: capability not granted to this plugin in gateway.toml"},
	}
	expect(t, none, abi.StageData, msg, all)
	expect(t, none, abi.StageRcpt, nil, all)

	// Each capability grants its own functions only.
	body := NewChain(load(t, h, hostcallsSpec(t, "body", abi.CapBody)))
	expect(t, body, abi.StageData, msg, [][2]string{
		{"bodysize", "n=20"},
		{"header Subject 0 64", "n=-1"},
		{"kvget k 64", "n=-1"},
	})
}

func TestHeadersAndBodyAtOtherStages(t *testing.T) {
	h, _ := newHost(t)
	c := NewChain(load(t, h, hostcallsSpec(t, "hc", abi.CapHeaders|abi.CapBody)))
	msg := NewMessage([]byte(testMessage))
	wrong := [][2]string{
		{"header Subject 0 64", "n=-2"},
		{"headers 64", "n=-2"},
		{"bodysize", "n=-2"},
		{"bodyread 0 64", "n=-2"},
		{"sdk-header Subject", "err=sdk: header_get: not available at this stage"},
	}
	for _, st := range []abi.Stage{abi.StageConnect, abi.StageMail, abi.StageRcpt} {
		// A message passed at another stage is not given to plugins.
		expect(t, c, st, msg, wrong)
	}
	expect(t, c, abi.StageData, nil, wrong) // a data stage without a message
}

const dnsZone = `
$TTL 300
example.test. IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60
example.test. IN TXT "v=spf1 " "-all"
example.test. IN TXT "two\"quote"
example.test. IN A 192.0.2.1
example.test. IN AAAA 2001:db8::1
example.test. IN MX 10 mx1.example.test.
example.test. IN MX 20 mx2.example.test.
1.2.0.192.in-addr.arpa. IN PTR host.example.test.
b.example.test. IN TXT "b"
c.example.test. IN TXT "c"
d.example.test. IN TXT "d"
`

func dnsHost(t testing.TB, srv *dnstest.Server) *Host {
	t.Helper()
	res, err := resolver.New(resolver.Config{Nameservers: []string{srv.Addr()}, Timeout: 5 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(context.Background(), HostConfig{CacheDir: wasmbuild.CacheDirForTest(), Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func TestDNSLookup(t *testing.T) {
	srv := dnstest.Start(t, dnsZone)
	h := dnsHost(t, srv)
	c := NewChain(load(t, h, hostcallsSpec(t, "hc", abi.CapDNS)))
	expect(t, c, abi.StageRcpt, nil, [][2]string{
		{"dns 16 example.test 256", `n=23 v="v=spf1 -all|two\"quote"`},
		{"dns 1 example.test 256", `n=11 v="192.0.2.1"`},
		{"dns 28 Example.Test. 256", `n=13 v="2001:db8::1"`},
		{"dns 15 example.test 256", `n=41 v="10 mx1.example.test|20 mx2.example.test"`},
		{"dns 12 1.2.0.192.in-addr.arpa 256", `n=19 v="host.example.test"`},
		{"dns 16 nx.example.test 256", "n=-3"},    // NXDOMAIN
		{"dns 15 b.example.test 256", `n=1 v=""`}, // NODATA: an empty list
		{"dns 99 example.test 256", "n=-5"},       // a type we do not answer
		{"dns 16 bad..name 256", "n=-5"},          // not a domain name
		{"sdk-txt example.test", `"v=spf1 -all|two\"quote"`},
	})
	// The same at the data stage, where a message may be read too.
	expect(t, c, abi.StageData, NewMessage([]byte(testMessage)), [][2]string{
		{"dns 1 example.test 256", `n=11 v="192.0.2.1"`},
	})
}

func TestDNSBudget(t *testing.T) {
	srv := dnstest.Start(t, dnsZone)
	h := dnsHost(t, srv)
	s := hostcallsSpec(t, "hc", abi.CapDNS)
	s.DNSLookups = 2
	c := NewChain(load(t, h, s))
	expect(t, c, abi.StageRcpt, nil, [][2]string{
		{"dns 16 b.example.test 2", "n=3"},        // too small: costs one lookup
		{"dns 16 b.example.test 64", `n=3 v="b"`}, // the same again is free
		{"dns 16 c.example.test 64", `n=3 v="c"`}, // the second lookup
		{"dns 16 d.example.test 64", "n=-6"},      // over the budget
		{"sdk-txt d.example.test", "err=sdk: dns_lookup: the call's DNS lookups, HTTP requests or time are used up"},
	})
	queries := srv.Queries()
	// Each call has a budget of its own.
	expect(t, c, abi.StageRcpt, nil, [][2]string{{"dns 16 d.example.test 64", `n=3 v="d"`}})
	if srv.Queries() != queries+1 {
		t.Errorf("the lookup over budget reached the server: %d queries, want %d", srv.Queries(), queries+1)
	}
}

func TestDNSDeadline(t *testing.T) {
	srv := dnstest.Start(t, dnsZone)
	srv.Drop("slow.example.test.")
	h := dnsHost(t, srv)
	s := hostcallsSpec(t, "hc", abi.CapDNS)
	s.Timeout = 2 * time.Second
	c := NewChain(load(t, h, s))
	// A lookup that gets no answer ends before the call's deadline, so the
	// plugin still answers; after it the call's lookups are spent.
	expect(t, c, abi.StageRcpt, nil, [][2]string{
		{"dns 16 slow.example.test 64", "n=-6"},
		{"dns 16 b.example.test 64", "n=-6"},
		// Its text says time may be what ran out: nothing was over the
		// number of lookups here (a plugin logs this text).
		{"sdk-txt b.example.test", "err=sdk: dns_lookup: the call's DNS lookups, HTTP requests or time are used up"},
	})
}

// A module that imports a function it was not granted would see ErrDenied
// on every call and, like most plugins, let everything through: the load is
// refused, naming the setting to fix and what to write there.
func TestUngrantedImportsRefuseTheLoad(t *testing.T) {
	h, _ := newHost(t)
	for _, c := range []struct {
		caps abi.Capability
		want string
	}{
		{abi.CapHeaders | abi.CapBody | abi.CapKV | abi.CapMetrics,
			`plugin hc: it imports sluice.dns_lookup and sluice.dns_lookup_many but capabilities does not grant "dns": make it capabilities = ["headers", "body", "dns", "kv", "metrics"]`},
		{abi.CapBody | abi.CapKV | abi.CapMetrics,
			`plugin hc: it imports sluice.header_get, sluice.headers, sluice.dns_lookup and sluice.dns_lookup_many but capabilities does not grant "headers" or "dns": make it capabilities = ["headers", "body", "dns", "kv", "metrics"]`},
		{0, `but capabilities does not grant "headers", "body", "dns", "kv" or "metrics": add capabilities = ["headers", "body", "dns", "kv", "metrics"]`},
	} {
		s := hostcallsSpec(t, "hc", c.caps)
		s.ungranted = false
		_, err := h.Load(context.Background(), s)
		var ke *KeyError
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &ke) || ke.Key != "capabilities" {
			t.Errorf("granted %q: Load = %v, want a KeyError for capabilities with %q", c.caps, err, c.want)
		}
	}
}

func TestDNSNeedsResolver(t *testing.T) {
	h, _ := newHost(t)
	_, err := h.Load(context.Background(), hostcallsSpec(t, "hc", abi.CapDNS))
	if err == nil || !strings.Contains(err.Error(), "capability dns: this host has no resolver") {
		t.Errorf("Load with dns and no resolver = %v", err)
	}
}

// kvHost starts a host whose key-value store holds 1000 bytes and runs on
// a clock the test moves.
func kvHost(t *testing.T) (*fakeclock.Clock, *Host) {
	t.Helper()
	clk := fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	kv := NewMemoryKV(MemoryKVConfig{Now: clk.Now, MaxBytes: 1000})
	h, err := NewHost(context.Background(), HostConfig{CacheDir: wasmbuild.CacheDirForTest(), KV: kv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return clk, h
}

func TestKV(t *testing.T) {
	clk, h := kvHost(t)
	a := NewChain(load(t, h, hostcallsSpec(t, "a", abi.CapKV)))
	b := NewChain(load(t, h, hostcallsSpec(t, "b", abi.CapKV)))

	expect(t, a, abi.StageMail, nil, [][2]string{
		{"kvget k 64", "n=-3"},
		{"kvset k hello 1000", "n=0"},
		{"kvget k 64", `n=5 v="hello"`},
		{"kvget k 2", "n=5"},
		{"sdk-kv k", `"hello"`},
		{"kvset gone x 1000", "n=0"},
		{"kvdel gone", "n=0"},
		{"kvdel gone", "n=0"}, // deleting what is not there is fine
		{"kvget gone 64", "n=-3"},
	})
	// Plugins have a scope each: b neither sees nor changes a's key.
	expect(t, b, abi.StageMail, nil, [][2]string{
		{"kvget k 64", "n=-3"},
		{"kvset k other 5000", "n=0"},
		{"kvget k 64", `n=5 v="other"`},
	})
	expect(t, a, abi.StageRcpt, nil, [][2]string{{"kvget k 64", `n=5 v="hello"`}})

	// TTLs: a's entry lasts 1000 ms, b's 5000 ms.
	clk.Advance(999 * time.Millisecond)
	expect(t, a, abi.StageRcpt, nil, [][2]string{{"kvget k 64", `n=5 v="hello"`}})
	clk.Advance(time.Millisecond)
	expect(t, a, abi.StageRcpt, nil, [][2]string{{"kvget k 64", "n=-3"}})
	expect(t, b, abi.StageRcpt, nil, [][2]string{{"kvget k 64", `n=5 v="other"`}})

	long := strings.Repeat("k", abi.MaxKVKey+1)
	expect(t, a, abi.StageRcpt, nil, [][2]string{
		{"kvset k v 0", "n=-5"},  // a TTL is required
		{"kvset k v -5", "n=-5"}, // and positive
		{"kvset " + long + " v 1000", "n=-5"},
		{"kvget " + long + " 64", "n=-5"},
	})

	// The scope is bounded (1000 bytes here, 64 per entry besides its key
	// and value): once full, sets are refused until entries expire.
	var fill [][2]string
	for _, k := range []string{"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "ka", "kb", "kc", "kd", "ke"} {
		fill = append(fill, [2]string{"kvset " + k + " v 1000", "n=0"})
	}
	fill = append(fill, [2]string{"kvset kf v 1000", "n=-8"})
	expect(t, a, abi.StageRcpt, nil, fill)
	clk.Advance(time.Second)
	expect(t, a, abi.StageRcpt, nil, [][2]string{{"kvset kf v 1000", "n=0"}})
}

func TestKVIncr(t *testing.T) {
	clk, h := kvHost(t)
	a := NewChain(load(t, h, hostcallsSpec(t, "a", abi.CapKV)))

	huge := "9223372036854775807"
	expect(t, a, abi.StageMail, nil, [][2]string{
		{"kvincr n 1 1000", "n=0 v=1"}, // a missing key starts at 0
		{"kvincr n 41 1000", "n=0 v=42"},
		{"kvget n 64", `n=2 v="42"`}, // in decimal, as kv_get reads it
		{"kvincr n -50 1000", "n=0 v=-8"},
		{"kvincr n 0 1000", "n=0 v=-8"},
		{"sdk-incr n 10 1000", `"2"`},
		{"kvset text hello 1000", "n=0"},
		{"kvincr text 1 1000", "n=-5"}, // not a number
		{"kvget text 64", `n=5 v="hello"`},
		{"kvset big " + huge + " 1000", "n=0"},
		{"kvincr big 1 1000", "n=-5"}, // would overflow
		{"kvget big 64", fmt.Sprintf("n=%d v=%q", len(huge), huge)},
		{"kvincr big -1 1000", "n=0 v=9223372036854775806"},
		{"kvincr n 1 0", "n=-5"}, // a TTL is required
		{"kvincr n 1 -1", "n=-5"},
		{"kvincr " + strings.Repeat("k", abi.MaxKVKey+1) + " 1 1000", "n=-5"},
	})
	// The TTL counts from the key's creation: adding does not move it.
	clk.Advance(600 * time.Millisecond)
	expect(t, a, abi.StageRcpt, nil, [][2]string{{"kvincr n 1 5000", "n=0 v=3"}})
	clk.Advance(400 * time.Millisecond)
	expect(t, a, abi.StageRcpt, nil, [][2]string{
		{"kvget n 64", "n=-3"},
		{"kvincr n 1 5000", "n=0 v=1"}, // expired: a new window, with the new TTL
	})
	clk.Advance(4999 * time.Millisecond)
	expect(t, a, abi.StageRcpt, nil, [][2]string{{"kvincr n 1 1000", "n=0 v=2"}})

	// A full store refuses a new counter; expired entries make room.
	var fill [][2]string
	for i := range 13 { // 13 entries of 67 or 68 bytes and n's 66 leave 60 of 1000: less than a counter takes
		fill = append(fill, [2]string{fmt.Sprintf("kvset f%d v 1000", i), "n=0"})
	}
	expect(t, a, abi.StageRcpt, nil, fill)
	expect(t, a, abi.StageRcpt, nil, [][2]string{{"kvincr c 1 1000", "n=-8"}})
	clk.Advance(time.Second)
	expect(t, a, abi.StageRcpt, nil, [][2]string{{"kvincr c 1 1000", "n=0 v=1"}})
}

// Counters are exact under concurrency: instances of a plugin, called at
// once, each increment the same key, and none is lost.
func TestKVIncrConcurrent(t *testing.T) {
	kv := NewMemoryKV(MemoryKVConfig{})
	h, err := NewHost(context.Background(), HostConfig{CacheDir: wasmbuild.CacheDirForTest(), KV: kv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	spec := hostcallsSpec(t, "a", abi.CapKV)
	spec.Instances = 4
	c := NewChain(load(t, h, spec))
	const callers, calls, each = 8, 10, 50
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range calls {
				req := &abi.Request{Stage: abi.StageRcpt, SessionID: "s", ClientIP: "127.0.0.1", Helo: fmt.Sprintf("repeat %d kvincr hits 1 60000", each)}
				if o := c.Run(context.Background(), req, nil); len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil {
					t.Errorf("%+v", o.Verdicts)
				}
			}
		})
	}
	// And the store directly, as a store shared by nodes is used.
	for range callers {
		wg.Go(func() {
			for range calls * each {
				if _, err := kv.Incr(context.Background(), "a", "hits", 1, time.Minute); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	want := fmt.Sprintf(`n=4 v="%d"`, 2*callers*calls*each)
	expect(t, c, abi.StageRcpt, nil, [][2]string{{"kvget hits 64", want}})
}

// recorder is a Counters that keeps what it is given.
type recorder struct {
	mu  sync.Mutex
	got map[string]float64
}

func (r *recorder) Add(plugin, name string, delta float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[plugin+"/"+name] += delta
}

func TestCounters(t *testing.T) {
	rec := &recorder{got: map[string]float64{}}
	h, err := NewHost(context.Background(), HostConfig{CacheDir: wasmbuild.CacheDirForTest(), Counters: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	c := NewChain(load(t, h, hostcallsSpec(t, "hc", abi.CapMetrics)))
	expect(t, c, abi.StageConnect, nil, [][2]string{
		{"count hits 1", "n=0"},
		{"count hits 2.5", "n=0"},
		{"count spam_seen_2 0", "n=0"},
		{"count Bad-Name 1", "n=-5"},
		{"count 9lives 1", "n=-5"},
		{"count hits -1", "n=-5"}, // counters only go up
		{"count hits NaN", "n=-5"},
		{"count " + strings.Repeat("x", abi.MaxCounterName+1) + " 1", "n=-5"},
	})
	if rec.got["hc/hits"] != 3.5 || len(rec.got) != 2 {
		t.Errorf("counters = %v, want hc/hits 3.5 and hc/spam_seen_2 0", rec.got)
	}
}

func TestMemoryKVReplaceKeepsAccounting(t *testing.T) {
	kv := NewMemoryKV(MemoryKVConfig{MaxBytes: 300})
	ctx := context.Background()
	// Replacing a value many times must not leak its size.
	for i := range 100 {
		if err := kv.Set(ctx, "p", "key", []byte(strings.Repeat("v", i%50)), time.Hour); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
	}
	if err := kv.Set(ctx, "p", "other", make([]byte, 60), time.Hour); err != nil {
		t.Errorf("room for a second entry: %v", err)
	}
	if err := kv.Set(ctx, "p", "third", make([]byte, 60), time.Hour); err != ErrKVFull {
		t.Errorf("over the bound: %v, want ErrKVFull", err)
	}
	// A refused replacement keeps the old value.
	if err := kv.Set(ctx, "p", "other", make([]byte, 150), time.Hour); err != ErrKVFull {
		t.Errorf("growing over the bound: %v", err)
	}
	if v, ok, _ := kv.Get(ctx, "p", "other"); !ok || len(v) != 60 {
		t.Errorf("after a refused replacement: %d bytes, %v; want the old 60", len(v), ok)
	}
	// Scopes are bounded separately.
	if err := kv.Set(ctx, "q", "other", make([]byte, 60), time.Hour); err != nil {
		t.Errorf("another scope: %v", err)
	}
}

func TestFindingsInRecords(t *testing.T) {
	h, _ := newHost(t)
	c := NewChain(load(t, h, scriptedSpec(t, "s", `finding = "SYMBOL"`)))
	o := c.Run(context.Background(), rcpt("a@x.test"), nil)
	if len(o.Verdicts) != 1 || len(o.Verdicts[0].Findings) != 1 || o.Verdicts[0].Findings[0] != (abi.Finding{Symbol: "SYMBOL", Score: 1.5}) {
		t.Errorf("records %+v, want the plugin's finding in its record", o.Verdicts)
	}
}

// sha256Prefix is how the hostcalls plugin reports a body it read.
func sha256Prefix(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// TestABIDocumentsHostFunctions keeps sdk/ABI.md, the contract for other
// languages, in step with what the host provides.
func TestABIDocumentsHostFunctions(t *testing.T) {
	doc, err := os.ReadFile("../../../sdk/ABI.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(\\w+)` \\| `\\(([^)]*)\\) -> ([^`]*)` \\|")
	documented := map[string]signature{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		var s signature
		for _, p := range strings.Split(m[2], ",") {
			if f := strings.Fields(p); len(f) > 0 {
				s.params = append(s.params, valueType(t, f[len(f)-1]))
			}
		}
		if r := strings.Fields(strings.Trim(m[3], "() ")); len(r) > 0 {
			s.results = append(s.results, valueType(t, r[len(r)-1]))
		}
		documented[m[1]] = s
	}
	for _, f := range hostFuncTable {
		d, ok := documented[f.name]
		if !ok {
			t.Errorf("sdk/ABI.md does not list %s", f.name)
			continue
		}
		if want := (signature{f.params, f.results}); !d.equal(want) {
			t.Errorf("sdk/ABI.md gives %s as %s; the host's is %s", f.name, d, want)
		}
	}
	codes := map[int32]string{
		abi.ErrDenied: "ERR_DENIED", abi.ErrStage: "ERR_STAGE", abi.ErrNotFound: "ERR_NOT_FOUND",
		abi.ErrMemory: "ERR_MEMORY", abi.ErrInvalid: "ERR_INVALID", abi.ErrBudget: "ERR_BUDGET",
		abi.ErrTemporary: "ERR_TEMPORARY", abi.ErrFull: "ERR_FULL",
		abi.ErrNotAllowed: "ERR_NOT_ALLOWED", abi.ErrTooLarge: "ERR_TOO_LARGE", abi.ErrTimeout: "ERR_TIMEOUT",
	}
	for code, name := range codes {
		if !strings.Contains(string(doc), fmt.Sprintf("| %d | `%s` |", code, name)) {
			t.Errorf("sdk/ABI.md does not give %s as %d", name, code)
		}
	}
	for _, c := range abi.CapabilityNames() {
		if !strings.Contains(string(doc), "| `"+c+"` |") {
			t.Errorf("sdk/ABI.md does not describe the capability %s", c)
		}
	}
}

func valueType(t *testing.T, name string) api.ValueType {
	switch name {
	case "i32":
		return i32
	case "i64":
		return i64
	case "f64":
		return f64
	}
	t.Fatalf("unknown type %q in sdk/ABI.md", name)
	return 0
}

// downKV is a store that is down: every call fails, as a Redis that
// refuses connections.
type downKV struct{}

var errDown = errors.New("redis: connection refused")

func (downKV) Get(context.Context, string, string) ([]byte, bool, error) { return nil, false, errDown }
func (downKV) Set(context.Context, string, string, []byte, time.Duration) error {
	return errDown
}
func (downKV) Delete(context.Context, string, string) error { return errDown }
func (downKV) Incr(context.Context, string, string, int64, time.Duration) (int64, error) {
	return 0, errDown
}

// A store that is down fails every call with a temporary error, and is
// logged once, not once a call: during an outage each call is counted and
// named in the plugin's own failure line already.
func TestKVDownLoggedOnce(t *testing.T) {
	logs := &syncbuf.Buffer{}
	h, err := NewHost(context.Background(), HostConfig{
		CacheDir: wasmbuild.CacheDirForTest(), KV: downKV{},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	a := NewChain(load(t, h, hostcallsSpec(t, "a", abi.CapKV)))
	var cases [][2]string
	for range 5 {
		cases = append(cases, [][2]string{
			{"kvget k 64", fmt.Sprintf("n=%d", abi.ErrTemporary)},
			{"kvset k v 1000", fmt.Sprintf("n=%d", abi.ErrTemporary)},
			{"kvincr k 1 1000", fmt.Sprintf("n=%d", abi.ErrTemporary)},
			{"kvdel k", fmt.Sprintf("n=%d", abi.ErrTemporary)},
		}...)
	}
	expect(t, a, abi.StageMail, nil, cases)
	if n := strings.Count(logs.String(), "key-value store failed"); n != 1 {
		t.Errorf("%d lines for 20 failed calls, want 1:\n%s", n, logs.String())
	}
}
