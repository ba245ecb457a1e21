package submission

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
	"github.com/sluice-mail/sluice/gateway/internal/login"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/rediskv"
	"github.com/sluice-mail/sluice/gateway/internal/redistest"
)

var ctx = context.Background()

// The hashes are made once: each argon2id hash takes 64 MiB and a while.
var (
	hashesOnce                       sync.Once
	aliceHash, aliceNewHash, bobHash string
)

// users makes the test users: alice with an argon2id hash of "alice-pw",
// bob with a bcrypt hash of "bob-pw".
func users(t testing.TB) []User {
	t.Helper()
	hashesOnce.Do(func() {
		var err error
		if aliceHash, err = login.HashArgon2id("alice-pw"); err != nil {
			panic(err)
		}
		if aliceNewHash, err = login.HashArgon2id("alice-new"); err != nil {
			panic(err)
		}
		if bobHash, err = login.HashBcrypt("bob-pw"); err != nil {
			panic(err)
		}
	})
	return []User{
		{Name: "alice", PasswordHash: aliceHash, Senders: []string{"alice@example.com", "*@xn--bcher-kva.example"}},
		{Name: "bob", PasswordHash: bobHash, Senders: []string{"info@example.com"}},
	}
}

// newUsers is New with the test users, limits of 3 per client and 5 per
// user in a 15 minute window, and a MemoryKV on clock, unless c sets
// others.
func newUsers(t testing.TB, c Config, clock *fakeclock.Clock) *Users {
	t.Helper()
	if c.Users == nil {
		c.Users = users(t)
	}
	if c.MaxFailuresPerIP == 0 {
		c.MaxFailuresPerIP = 3
	}
	if c.MaxFailuresPerUser == 0 {
		c.MaxFailuresPerUser = 5
	}
	if c.FailureWindow == 0 {
		c.FailureWindow = 15 * time.Minute
	}
	if clock == nil {
		clock = fakeclock.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	}
	if c.KV == nil {
		c.KV = plugin.NewMemoryKV(plugin.MemoryKVConfig{Now: clock.Now})
	}
	if c.Now == nil {
		c.Now = clock.Now
	}
	u, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// wantReply checks that err is the reply code and enhanced code.
func wantReply(t *testing.T, err error, code int, enhanced smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a %d %v reply", err, code, enhanced)
	}
	if se.Code != code || se.EnhancedCode != enhanced {
		t.Fatalf("got %d %v %s, want %d %v", se.Code, se.EnhancedCode, se.Message, code, enhanced)
	}
}

var (
	invalid   = smtp.EnhancedCode{5, 7, 8}
	temporary = smtp.EnhancedCode{4, 7, 0}
)

func TestAuthenticate(t *testing.T) {
	u := newUsers(t, Config{MaxFailuresPerIP: 100, MaxFailuresPerUser: 100}, nil)
	client := ip("192.0.2.1")
	for _, c := range []struct{ user, password string }{{"alice", "alice-pw"}, {"bob", "bob-pw"}} {
		if err := u.Authenticate(ctx, client, c.user, c.password); err != nil {
			t.Errorf("%s with the right password: %v", c.user, err)
		}
	}
	for _, c := range []struct{ user, password string }{
		{"alice", "bob-pw"},     // argon2id, wrong
		{"bob", "alice-pw"},     // bcrypt, wrong
		{"mallory", "alice-pw"}, // unknown name, a password that is right for another
		{"Alice", "alice-pw"},   // names are exact
		{"alice", ""},
		{"", ""},
	} {
		err := u.Authenticate(ctx, client, c.user, c.password)
		wantReply(t, err, 535, invalid)
		if msg := err.(*smtp.SMTPError).Message; msg != "Authentication credentials invalid" {
			t.Errorf("%q/%q: message %q", c.user, c.password, msg)
		}
	}
}

func TestNewRefusesBadHash(t *testing.T) {
	_, err := New(Config{Users: []User{{Name: "x", PasswordHash: "plain"}}, KV: plugin.NewMemoryKV(plugin.MemoryKVConfig{}),
		MaxFailuresPerIP: 1, MaxFailuresPerUser: 1, FailureWindow: time.Minute})
	if err == nil {
		t.Fatal("a password that is not a hash was taken")
	}
}

func TestThrottlePerClient(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	var log bytes.Buffer
	u := newUsers(t, Config{MaxFailuresPerUser: 100, Logger: slog.New(slog.NewTextHandler(&log, nil))}, clock)
	guesser := ip("192.0.2.1")
	for range 3 {
		wantReply(t, u.Authenticate(ctx, guesser, "bob", "guess"), 535, invalid)
	}
	if n := strings.Count(log.String(), `level=WARN msg="submission logins throttled" by=client client=192.0.2.1 failures=3 window=15m0s`); n != 1 {
		t.Errorf("%d lines saying the client is throttled, want 1:\n%s", n, log.String())
	}
	// Throttled: even the right password is refused, with a 454 that
	// does not say whether it was right.
	err := u.Authenticate(ctx, guesser, "bob", "bob-pw")
	wantReply(t, err, 454, temporary)
	if msg := err.(*smtp.SMTPError).Message; !regexp.MustCompile(`(?i)try again later`).MatchString(msg) {
		t.Errorf("throttled reply %q does not say to try later", msg)
	}
	wantReply(t, u.Authenticate(ctx, guesser, "alice", "alice-pw"), 454, temporary)
	// Another client is not.
	if err := u.Authenticate(ctx, ip("192.0.2.2"), "bob", "bob-pw"); err != nil {
		t.Fatalf("another client: %v", err)
	}
	// The window ends.
	clock.Advance(15*time.Minute + time.Second)
	if err := u.Authenticate(ctx, guesser, "bob", "bob-pw"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestThrottleIPv6By64(t *testing.T) {
	u := newUsers(t, Config{MaxFailuresPerUser: 100}, nil)
	// Three addresses of one /64 are one client, whether written as
	// IPv6 or an IPv4-mapped address is given.
	for _, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"} {
		wantReply(t, u.Authenticate(ctx, ip(a), "bob", "guess"), 535, invalid)
	}
	wantReply(t, u.Authenticate(ctx, ip("2001:db8:1:2::99"), "bob", "bob-pw"), 454, temporary)
	if err := u.Authenticate(ctx, ip("2001:db8:1:3::1"), "bob", "bob-pw"); err != nil {
		t.Fatalf("the next /64: %v", err)
	}
	// IPv4 per address, mapped or not.
	for range 3 {
		wantReply(t, u.Authenticate(ctx, ip("::ffff:192.0.2.7"), "bob", "guess"), 535, invalid)
	}
	wantReply(t, u.Authenticate(ctx, ip("192.0.2.7"), "bob", "bob-pw"), 454, temporary)
	if err := u.Authenticate(ctx, ip("192.0.2.8"), "bob", "bob-pw"); err != nil {
		t.Fatalf("the next IPv4 address: %v", err)
	}
}

func TestThrottlePerUser(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	u := newUsers(t, Config{MaxFailuresPerIP: 100}, clock)
	// Five guessers, one guess each.
	for i := range 5 {
		wantReply(t, u.Authenticate(ctx, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "alice", "guess"), 535, invalid)
	}
	// alice is throttled from anywhere, a new client included; bob is not.
	wantReply(t, u.Authenticate(ctx, ip("203.0.113.1"), "alice", "alice-pw"), 454, temporary)
	if err := u.Authenticate(ctx, ip("203.0.113.1"), "bob", "bob-pw"); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// Unknown names are counted too, and come out the same way.
	for i := range 5 {
		wantReply(t, u.Authenticate(ctx, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "mallory", "guess"), 535, invalid)
	}
	wantReply(t, u.Authenticate(ctx, ip("203.0.113.1"), "mallory", "guess"), 454, temporary)
	clock.Advance(15*time.Minute + time.Second)
	if err := u.Authenticate(ctx, ip("203.0.113.1"), "alice", "alice-pw"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// A name longer than maxNameKey is counted under its hash, and still
// throttled.
func TestThrottleLongName(t *testing.T) {
	u := newUsers(t, Config{MaxFailuresPerIP: 100, MaxFailuresPerUser: 2}, nil)
	long := string(make([]byte, 10000))
	if k := userKey(long); len(k) > maxNameKey+10 {
		t.Fatalf("key of %d bytes", len(k))
	}
	for range 2 {
		wantReply(t, u.Authenticate(ctx, ip("192.0.2.1"), long, "x"), 535, invalid)
	}
	wantReply(t, u.Authenticate(ctx, ip("192.0.2.1"), long, "x"), 454, temporary)
}

// The counters are in a scope no plugin can have, so no plugin reads or
// resets them.
func TestScopeIsNoPluginName(t *testing.T) {
	// config's pluginNameRE (validate.go).
	if regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`).MatchString(kvScope) {
		t.Fatalf("scope %q could be a plugin's name", kvScope)
	}
	kv := plugin.NewMemoryKV(plugin.MemoryKVConfig{})
	u := newUsers(t, Config{KV: kv}, nil)
	u.Authenticate(ctx, ip("192.0.2.1"), "bob", "guess")
	if v, ok, _ := kv.Get(ctx, kvScope, "ip:192.0.2.1"); !ok || string(v) != "1" {
		t.Fatalf("counter in %q = %q, %v", kvScope, v, ok)
	}
}

// Two gateway nodes share Redis: failures on either count for both.
func TestThrottleAcrossNodes(t *testing.T) {
	s := redistest.Start(t)
	node := func() *Users {
		kv, err := rediskv.New(rediskv.Config{Addrs: []string{s.Addr()}, Prefix: "sluice:", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kv.Close)
		return newUsers(t, Config{KV: kv, MaxFailuresPerUser: 100, FailureWindow: 2 * time.Second}, nil)
	}
	a, b := node(), node()
	guesser := ip("192.0.2.1")
	wantReply(t, a.Authenticate(ctx, guesser, "bob", "guess"), 535, invalid)
	wantReply(t, b.Authenticate(ctx, guesser, "bob", "guess"), 535, invalid)
	wantReply(t, a.Authenticate(ctx, guesser, "bob", "guess"), 535, invalid)
	wantReply(t, b.Authenticate(ctx, guesser, "bob", "bob-pw"), 454, temporary)
	wantReply(t, a.Authenticate(ctx, guesser, "bob", "bob-pw"), 454, temporary)
	// The window is the key's time to live in Redis.
	if ttl := strings.TrimSpace(s.CLI("PTTL", "sluice:"+kvScope+":ip:192.0.2.1")); ttl == "-1" || ttl == "-2" {
		t.Logf("keys: %s", s.CLI("KEYS", "*"))
		t.Fatalf("PTTL of the counter = %s", ttl)
	}
	deadline := time.Now().Add(20 * time.Second)
	for b.Authenticate(ctx, guesser, "bob", "bob-pw") != nil {
		if time.Now().After(deadline) {
			t.Fatal("still throttled long after the window")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Logins started together cannot all pass the limit: each is counted
// before its password is verified, so of many guesses from one client at
// once only as many as the limit are verified, and the rest are
// throttled without a hash.
func TestThrottleConcurrentGuesses(t *testing.T) {
	u := newUsers(t, Config{MaxFailuresPerUser: 1000}, nil) // 3 per client
	guesser := ip("192.0.2.1")
	const guesses = 12
	replies := make(chan error, guesses)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies <- u.Authenticate(ctx, guesser, fmt.Sprintf("name%d", i), "guess")
		}()
	}
	close(start)
	wg.Wait()
	close(replies)
	codes := map[int]int{}
	for err := range replies {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			t.Fatalf("reply %v", err)
		}
		codes[se.Code]++
	}
	if codes[535] != 3 || codes[454] != guesses-3 {
		t.Errorf("replies %v, want 3 guesses verified (535) and %d throttled (454)", codes, guesses-3)
	}
	// The right password is refused too, and a login that succeeds
	// gives its count back.
	wantReply(t, u.Authenticate(ctx, guesser, "bob", "bob-pw"), 454, temporary)
	other := ip("192.0.2.2")
	for range 5 {
		if err := u.Authenticate(ctx, other, "bob", "bob-pw"); err != nil {
			t.Fatalf("good logins counted as failures: %v", err)
		}
	}
}

// A throttled client's logins make no counters: trying a new name for
// each, it would otherwise fill the KV for nothing (a throttled login
// costs no hash), and then no one could log in.
func TestThrottledMakesNoCounters(t *testing.T) {
	u := newUsers(t, Config{}, nil) // 3 per client
	guesser := ip("192.0.2.1")
	for i := range 3 {
		wantReply(t, u.Authenticate(ctx, guesser, fmt.Sprintf("name%d", i), "guess"), 535, invalid)
	}
	for i := 3; i < 20; i++ {
		name := fmt.Sprintf("name%d", i)
		wantReply(t, u.Authenticate(ctx, guesser, name, "guess"), 454, temporary)
		if v, ok, _ := u.kv.Get(ctx, kvScope, userKey(name)); ok {
			t.Fatalf("a throttled login made the counter of %q: %s", name, v)
		}
	}
	if v, _, _ := u.kv.Get(ctx, kvScope, clientKey(guesser)); string(v) != "3" {
		t.Errorf("the client's counter is %s, want 3", v)
	}
}

// Guesses made at the same time on two nodes sharing Redis are held to
// the per-user limit as guesses one after another are.
func TestThrottleConcurrentGuessesAcrossNodes(t *testing.T) {
	s := redistest.Start(t)
	node := func() *Users {
		kv, err := rediskv.New(rediskv.Config{Addrs: []string{s.Addr()}, Prefix: "sluice:", Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kv.Close)
		// alice's hash is argon2id: each guess takes a while to verify.
		return newUsers(t, Config{KV: kv, MaxFailuresPerUser: 5}, nil)
	}
	nodes := []*Users{node(), node()}
	const guesses = 16
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		replies = map[int]int{}
	)
	for i := range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// From 16 clients, so that only alice's limit of 5 applies.
			err := nodes[i%2].Authenticate(ctx, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "alice", "guess")
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				t.Errorf("guess %d: %v", i, err)
				return
			}
			mu.Lock()
			replies[se.Code]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if replies[535] != 5 || replies[454] != guesses-5 {
		t.Errorf("replies %v, want 5 guesses verified (535) and the other %d throttled (454)", replies, guesses-5)
	}
	if v := strings.TrimSpace(s.CLI("GET", "sluice:"+kvScope+":user:alice")); v != "5" {
		t.Errorf("alice's counter %s, want 5", v)
	}
	// A right password gives back its count: three logins in a row from
	// a client with a limit of 3 are not throttled.
	for i := range 3 {
		if err := nodes[i%2].Authenticate(ctx, ip("192.0.2.1"), "bob", "bob-pw"); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		nodes[i%2].cache = must(newCache(nodes[i%2].now)) // verified each time
	}
	if v := strings.TrimSpace(s.CLI("GET", "sluice:"+kvScope+":ip:192.0.2.1")); v != "0" {
		t.Errorf("the client's counter after good logins: %s, want 0", v)
	}
}

// When the counters cannot be read or written, the failure is ours: 454,
// never 535, whatever the password.
func TestKVDown(t *testing.T) {
	s := redistest.Start(t)
	kv, err := rediskv.New(rediskv.Config{Addrs: []string{s.Addr()}, Prefix: "sluice:", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kv.Close)
	m := NewMetrics(prometheus.NewRegistry())
	var log bytes.Buffer
	u := newUsers(t, Config{KV: kv, Metrics: m, Logger: slog.New(slog.NewTextHandler(&log, nil))}, nil)
	if err := u.Authenticate(ctx, ip("192.0.2.1"), "bob", "bob-pw"); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}
	s.Stop()
	for _, pw := range []string{"bob-pw", "guess"} {
		err := u.Authenticate(ctx, ip("192.0.2.1"), "bob", pw)
		wantReply(t, err, 454, temporary)
		if msg := err.(*smtp.SMTPError).Message; msg != "Temporary authentication failure" {
			t.Errorf("message %q", msg)
		}
	}
	if n := testutil.ToFloat64(m.logins.WithLabelValues(resultError)); n != 2 {
		t.Errorf("errors counted: %v, want 2", n)
	}
	// Logged once in plugin.KVLogEvery, not for each login.
	if n := strings.Count(log.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines, want 1:\n%s", n, log.String())
	}
}

// A Users whose counters fail only when written: the guess is not
// counted, so the reply is the temporary failure rather than 535.
type failingIncr struct{ plugin.KV }

func (failingIncr) Incr(context.Context, string, string, int64, time.Duration) (int64, error) {
	return 0, errors.New("no room")
}

func TestFailureNotCounted(t *testing.T) {
	u := newUsers(t, Config{KV: failingIncr{plugin.NewMemoryKV(plugin.MemoryKVConfig{})}}, nil)
	wantReply(t, u.Authenticate(ctx, ip("192.0.2.1"), "bob", "guess"), 454, temporary)
}

func TestMetrics(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	u := newUsers(t, Config{Metrics: m, MaxFailuresPerIP: 1}, nil)
	u.Authenticate(ctx, ip("192.0.2.1"), "bob", "bob-pw")
	u.Authenticate(ctx, ip("192.0.2.1"), "bob", "guess")
	u.Authenticate(ctx, ip("192.0.2.1"), "bob", "bob-pw")
	u.Authenticate(ctx, ip("192.0.2.1"), "bob", "bob-pw")
	for res, want := range map[string]float64{resultSuccess: 1, resultFailure: 1, resultThrottled: 2, resultError: 0} {
		if n := testutil.ToFloat64(m.logins.WithLabelValues(res)); n != want {
			t.Errorf("%s: %v, want %v", res, n, want)
		}
	}
}

// fillVerifying takes every verification slot, as a flood of logins
// would, and gives them back when the test ends or free is called.
func fillVerifying(t *testing.T, u *Users) (free func()) {
	for range cap(u.verifying) {
		u.verifying <- struct{}{}
	}
	var once sync.Once
	free = func() {
		once.Do(func() {
			for range cap(u.verifying) {
				<-u.verifying
			}
		})
	}
	t.Cleanup(free)
	return free
}

// Verifications wait for a slot; a login whose context ends while it
// waits gets the temporary failure, and one waiting gets its turn when
// a slot is free.
func TestVerificationsBounded(t *testing.T) {
	u := newUsers(t, Config{}, nil)
	free := fillVerifying(t, u)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	wantReply(t, u.Authenticate(short, ip("192.0.2.1"), "bob", "bob-pw"), 454, temporary)
	// A wrong password that never got verified is not counted.
	if v, ok, _ := u.kv.Get(ctx, kvScope, "ip:192.0.2.1"); ok && string(v) != "0" {
		t.Errorf("a login that was never verified was counted as failed: counter %s", v)
	}
	// An unknown name waits too: it is verified against the dummy hash,
	// so that it costs what a known one does.
	short2, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	wantReply(t, u.Authenticate(short2, ip("192.0.2.1"), "mallory", "guess"), 454, temporary)
	done := make(chan error, 1)
	go func() { done <- u.Authenticate(ctx, ip("192.0.2.1"), "bob", "bob-pw") }()
	select {
	case err := <-done:
		t.Fatalf("verified while every slot was taken: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	free()
	if err := <-done; err != nil {
		t.Fatalf("after a slot was freed: %v", err)
	}
}

func TestVerifySlots(t *testing.T) {
	for _, c := range []struct{ ncpu, want int }{{1, 2}, {2, 2}, {8, 2}, {12, 3}, {32, 8}} {
		if got := verifySlots(c.ncpu); got != c.want {
			t.Errorf("verifySlots(%d) = %d, want %d", c.ncpu, got, c.want)
		}
	}
}

// A login waits for its turn a bounded time, whatever its context: the
// session's is the server's, which ends only at shutdown, and behind a
// flood of logins a real user would otherwise hold its connection as long
// as the flood lasts.
func TestVerifyWaitIsBounded(t *testing.T) {
	u := newUsers(t, Config{}, nil)
	u.verifyWait = 50 * time.Millisecond
	fillVerifying(t, u)
	done := make(chan error, 1)
	go func() { done <- u.Authenticate(ctx, ip("192.0.2.1"), "bob", "bob-pw") }()
	select {
	case err := <-done:
		wantReply(t, err, 454, temporary)
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting for a turn")
	}
	if v, ok, _ := u.kv.Get(ctx, kvScope, "ip:192.0.2.1"); ok && string(v) != "0" {
		t.Errorf("a login that was never verified was counted as failed: counter %s", v)
	}
}

// A verified login is remembered for a few minutes: it needs no slot
// (and no hash) the next time, but only with the same password.
func TestCache(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	u := newUsers(t, Config{}, clock)
	if err := u.Authenticate(ctx, ip("192.0.2.1"), "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	fillVerifying(t, u)
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	if err := u.Authenticate(short(), ip("192.0.2.9"), "alice", "alice-pw"); err != nil {
		t.Fatalf("cached login: %v", err)
	}
	// Another password, or the same one for another name, is verified.
	wantReply(t, u.Authenticate(short(), ip("192.0.2.1"), "alice", "alice-pw2"), 454, temporary)
	wantReply(t, u.Authenticate(short(), ip("192.0.2.1"), "bob", "alice-pw"), 454, temporary)
	// Expired.
	clock.Advance(cacheTTL)
	wantReply(t, u.Authenticate(short(), ip("192.0.2.1"), "alice", "alice-pw"), 454, temporary)
}

// A throttled client is refused even with a cached password.
func TestCacheStillThrottled(t *testing.T) {
	u := newUsers(t, Config{MaxFailuresPerIP: 1}, nil)
	if err := u.Authenticate(ctx, ip("192.0.2.1"), "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	wantReply(t, u.Authenticate(ctx, ip("192.0.2.1"), "alice", "guess"), 535, invalid)
	wantReply(t, u.Authenticate(ctx, ip("192.0.2.1"), "alice", "alice-pw"), 454, temporary)
}

// A reload with a changed password: the old one no longer logs in, from
// any cache.
func TestReloadChangesPassword(t *testing.T) {
	kv := plugin.NewMemoryKV(plugin.MemoryKVConfig{})
	old := newUsers(t, Config{KV: kv}, nil)
	if err := old.Authenticate(ctx, ip("192.0.2.1"), "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	us := users(t)
	us[0].PasswordHash = aliceNewHash
	reloaded := newUsers(t, Config{KV: kv, Users: us}, nil)
	wantReply(t, reloaded.Authenticate(ctx, ip("192.0.2.1"), "alice", "alice-pw"), 535, invalid)
	if err := reloaded.Authenticate(ctx, ip("192.0.2.1"), "alice", "alice-new"); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	// Even a cache that outlived the reload would not serve the old
	// password: the hash is part of what it remembers.
	if old.cache.hit("alice", "alice-pw", aliceNewHash) {
		t.Fatal("the cache serves a password for a hash it was not verified against")
	}
}

func TestMaySend(t *testing.T) {
	u := newUsers(t, Config{}, nil)
	for _, c := range []struct {
		user, addr string
		want       bool
	}{
		{"alice", "alice@example.com", true},
		{"alice", "Alice@Example.COM", true}, // local part and domain without regard to case
		{"alice", "bob@example.com", false},
		{"alice", "alice@other.example", false},
		{"alice", "anyone@xn--bcher-kva.example", true}, // *@domain
		{"alice", "anyone@bücher.example", true},        // the same domain in U-labels
		{"alice", "anyone@BÜCHER.example", true},
		{"alice", "anyone@sub.xn--bcher-kva.example", false},
		{"alice", "xn--bcher-kva.example", false},
		{"alice", "", false},
		{"alice", "@example.com", false},
		{"bob", "info@example.com", true},
		{"bob", "INFO@example.com", true},
		{"bob", "alice@example.com", false},
		{"bob", "info@example.com.", false},
		{"mallory", "info@example.com", false},
		{"Alice", "alice@example.com", false},
	} {
		if got := u.MaySend(c.user, c.addr); got != c.want {
			t.Errorf("MaySend(%q, %q) = %v, want %v", c.user, c.addr, got, c.want)
		}
	}
}
