package srs

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// katTime is day 19675 since the epoch; 19675 mod 1024 = 219 = "G3".
var katTime = time.Unix(1700000000, 0).UTC()

// clock is a settable time source for one test.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func (c *clock) advance(days int) { c.t = c.t.Add(time.Duration(days) * day) }

func newRewriter(t testing.TB, c Config) *Rewriter {
	t.Helper()
	if c.Domain == "" {
		c.Domain = "sluice.test"
	}
	if c.Secrets == nil {
		c.Secrets = []string{"sluice-kat-secret"}
	}
	if c.Now == nil {
		c.Now = func() time.Time { return katTime }
	}
	r, err := New(c)
	if err != nil {
		t.Fatalf("New(%+v): %v", c, err)
	}
	return r
}

func mustForward(t *testing.T, r *Rewriter, addr string) string {
	t.Helper()
	got, err := r.Forward(addr)
	if err != nil {
		t.Fatalf("Forward(%q): %v", addr, err)
	}
	return got
}

func mustReverse(t *testing.T, r *Rewriter, addr string) string {
	t.Helper()
	got, err := r.Reverse(addr)
	if err != nil {
		t.Fatalf("Reverse(%q): %v", addr, err)
	}
	return got
}

// Values computed independently with Perl's Mail::SRS 0.31 (Guarded) at
// Unix time 1700000000, secret "sluice-kat-secret", and the first checked
// with `openssl dgst -sha1 -hmac`. Frozen here so that a change to the
// format is caught even where Perl is not installed.
func TestKnownAnswers(t *testing.T) {
	tests := []struct {
		hashLength int
		sender     string
		want       string
	}{
		{4, "user@example.org", "SRS0=uP83=G3=example.org=user@sluice.test"},
		{8, "user@example.org", "SRS0=uP83TQsD=G3=example.org=user@sluice.test"},
		{4, "Üser.名前@例え.jp", "SRS0=4pcE=G3=例え.jp=Üser.名前@sluice.test"},
		{4, "a=b=c@Example.ORG", "SRS0=UocB=G3=Example.ORG=a=b=c@sluice.test"},
		{4, "SRS0=abcd=G3=orig.example=alice@hop1.example",
			"SRS1=WXwn=hop1.example==abcd=G3=orig.example=alice@sluice.test"},
		{4, "SRS0+abcd=G3=orig.example=alice@hop1.example",
			"SRS1=TI92=hop1.example=+abcd=G3=orig.example=alice@sluice.test"},
		{4, "SRS1=wxyz=orig-hop.example==abcd=G3=orig.example=alice@hop2.example",
			"SRS1=BSNg=orig-hop.example==abcd=G3=orig.example=alice@sluice.test"},
	}
	for _, tt := range tests {
		r := newRewriter(t, Config{HashLength: tt.hashLength})
		if got := mustForward(t, r, tt.sender); got != tt.want {
			t.Errorf("HashLength %d: Forward(%q) = %q, want %q", tt.hashLength, tt.sender, got, tt.want)
		}
	}
}

// TestKeyedMACsReused checks that the keyed HMAC states a Rewriter keeps
// and reuses carry nothing from one hash to the next: one Rewriter gives
// the known answers again and again, in turn and from several goroutines
// at once, and Reverse still takes every address it made.
func TestKeyedMACsReused(t *testing.T) {
	want := map[string]string{
		"user@example.org":                             "SRS0=uP83=G3=example.org=user@sluice.test",
		"a=b=c@Example.ORG":                            "SRS0=UocB=G3=Example.ORG=a=b=c@sluice.test",
		"SRS0=abcd=G3=orig.example=alice@hop1.example": "SRS1=WXwn=hop1.example==abcd=G3=orig.example=alice@sluice.test",
	}
	r := newRewriter(t, Config{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				for sender, srs := range want {
					got, err := r.Forward(sender)
					if err != nil || got != srs {
						t.Errorf("Forward(%q) = %q, %v; want %q", sender, got, err, srs)
						return
					}
					if _, err := r.Reverse(got); err != nil {
						t.Errorf("Reverse(%q): %v", got, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestTimestampKnownAnswers(t *testing.T) {
	for days, want := range map[int64]string{0: "AA", 31: "A7", 32: "BA", 219: "G3", 1023: "77", 1024: "AA", 19675: "G3"} {
		if got := timestamp(days); got != want {
			t.Errorf("timestamp(%d) = %q, want %q", days, got, want)
		}
		v, ok := parseTimestamp(strings.ToLower(want))
		if !ok || v != days%1024 {
			t.Errorf("parseTimestamp(%q) = %d, %v; want %d", strings.ToLower(want), v, ok, days%1024)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	r := newRewriter(t, Config{})
	for _, sender := range []string{
		"user@example.org",
		"First.Last+tag@Mixed.Case.Example",
		"a=b==c=@example.org", // '=' in the local part, even at the end
		"=@example.org",
		"Üser.名前@例え.jp",
		"piñata@xn--piata-pta.example", // SMTPUTF8; the gateway gives domains as A-labels
		"srs0x@example.org",            // looks like a tag but has no separator
		"o'brien/dept@sub.example.co.uk",
	} {
		srsAddr := mustForward(t, r, sender)
		if !strings.HasPrefix(srsAddr, "SRS0=") || !strings.HasSuffix(srsAddr, "@sluice.test") {
			t.Errorf("Forward(%q) = %q, want SRS0=...@sluice.test", sender, srsAddr)
		}
		if !IsSRS(srsAddr) {
			t.Errorf("IsSRS(%q) = false", srsAddr)
		}
		if got := mustReverse(t, r, srsAddr); got != sender {
			t.Errorf("Reverse(Forward(%q)) = %q", sender, got)
		}
	}
}

func TestForwardLeavesAlone(t *testing.T) {
	r := newRewriter(t, Config{})
	for _, addr := range []string{"", "user@sluice.test", "User@SLUICE.Test", "SRS0=uP83=G3=example.org=user@sluice.test"} {
		if got := mustForward(t, r, addr); got != addr {
			t.Errorf("Forward(%q) = %q, want it unchanged", addr, got)
		}
	}
}

func TestRotation(t *testing.T) {
	old := newRewriter(t, Config{Secrets: []string{"old-secret"}})
	rotated := newRewriter(t, Config{Secrets: []string{"new-secret", "old-secret"}})
	dropped := newRewriter(t, Config{Secrets: []string{"new-secret"}})
	newOnly := newRewriter(t, Config{Secrets: []string{"new-secret"}})

	for _, sender := range []string{"user@example.org", "SRS0=abcd=G3=orig.example=alice@hop1.example"} {
		made := mustForward(t, old, sender)
		want := mustReverse(t, old, made)
		if got := mustReverse(t, rotated, made); got != want {
			t.Errorf("rotated Reverse(%q) = %q, want %q", made, got, want)
		}
		if _, err := dropped.Reverse(made); !errors.Is(err, ErrBadHash) {
			t.Errorf("Reverse(%q) without the old secret: err = %v, want ErrBadHash", made, err)
		}
		// New addresses are signed with the first secret only.
		signed := mustForward(t, rotated, sender)
		if want := mustForward(t, newOnly, sender); signed != want {
			t.Errorf("rotated Forward(%q) = %q, want %q (signed with the first secret)", sender, signed, want)
		}
		if _, err := old.Reverse(signed); !errors.Is(err, ErrBadHash) {
			t.Errorf("old Reverse(%q): err = %v, want ErrBadHash", signed, err)
		}
	}
}

func TestExpiry(t *testing.T) {
	tests := []struct {
		maxAge  time.Duration
		age     int // days between Forward and Reverse
		expired bool
	}{
		{0, 0, false},
		{0, 1, false},
		{0, 21, false},
		{0, 22, true},
		{0, 500, true},
		{0, -1, true}, // from the future: counts as 1023 days old
		{3 * day, 3, false},
		{3 * day, 4, true},
		{3*day + 23*time.Hour, 4, true}, // MaxAge is whole days, rounded down
		{day, 1, false},
		{day, 2, true},
		{1023 * day, 1023, false},
		{1023 * day, -1, false},
	}
	for _, tt := range tests {
		c := &clock{t: katTime}
		r := newRewriter(t, Config{MaxAge: tt.maxAge, Now: c.now})
		made := mustForward(t, r, "user@example.org")
		c.advance(tt.age)
		got, err := r.Reverse(made)
		if tt.expired {
			if !errors.Is(err, ErrExpired) {
				t.Errorf("MaxAge %v, age %d days: Reverse = %q, %v; want ErrExpired", tt.maxAge, tt.age, got, err)
			}
		} else if err != nil || got != "user@example.org" {
			t.Errorf("MaxAge %v, age %d days: Reverse = %q, %v; want user@example.org", tt.maxAge, tt.age, got, err)
		}
	}
}

// The day count wraps every 1024 days; ages must be counted across the
// wrap, like libsrs2 does.
func TestTimestampWrap(t *testing.T) {
	// Day 1023 of a cycle (stamp "77").
	lastDay := time.Unix((19*1024+1023)*86400+3600, 0)
	tests := []struct {
		age     int
		expired bool
	}{
		{1, false},    // stamp 1023, today 0 of the next cycle
		{21, false},   // today 20
		{22, true},    // today 21
		{1024, false}, // same stamp a full cycle later: the format cannot tell
		{1024 + 22, true},
	}
	for _, tt := range tests {
		c := &clock{t: lastDay}
		r := newRewriter(t, Config{Now: c.now})
		made := mustForward(t, r, "user@example.org")
		if !strings.Contains(made, "=77=") {
			t.Fatalf("Forward on day 1023 of a cycle = %q, want stamp 77", made)
		}
		c.advance(tt.age)
		_, err := r.Reverse(made)
		if tt.expired != errors.Is(err, ErrExpired) || (!tt.expired && err != nil) {
			t.Errorf("age %d across the wrap: err = %v, want expired=%v", tt.age, err, tt.expired)
		}
	}
}

func TestBadHash(t *testing.T) {
	r := newRewriter(t, Config{})
	const good = "SRS0=uP83=G3=example.org=user@sluice.test"
	const goodSRS1 = "SRS1=WXwn=hop1.example==abcd=G3=orig.example=alice@sluice.test"
	mustReverse(t, r, good)
	mustReverse(t, r, goodSRS1)
	for _, addr := range []string{
		"SRS0=uP84=G3=example.org=user@sluice.test",  // hash changed
		"SRS0=uP8=G3=example.org=user@sluice.test",   // hash too short
		"SRS0=uP83X=G3=example.org=user@sluice.test", // longer, but not the HMAC's next character
		"SRS0=uP83=G4=example.org=user@sluice.test",  // timestamp changed
		"SRS0=uP83=G3=example.net=user@sluice.test",  // domain changed
		"SRS0=uP83=G3=example.org=user2@sluice.test", // user changed
		"SRS0=uP83=G3=example.org=user=@sluice.test", // user extended
		"SRS0=uP83=G3=exämple.org=user@sluice.test",  // non-ASCII is not case-folded
		"SRS1=WXwn=hop1.example==abcd=G3=orig.example=bob@sluice.test",
		"SRS1=WXwn=hop2.example==abcd=G3=orig.example=alice@sluice.test",
		"SRS1=WXwm=hop1.example==abcd=G3=orig.example=alice@sluice.test",
		"SRS1=WXwn=hop1.example=+abcd=G3=orig.example=alice@sluice.test",
	} {
		if got, err := r.Reverse(addr); !errors.Is(err, ErrBadHash) {
			t.Errorf("Reverse(%q) = %q, %v; want ErrBadHash", addr, got, err)
		}
	}
	// A longer hash is accepted when it is a longer prefix of the HMAC
	// (uP83TQsD... per the known answers).
	if got := mustReverse(t, r, "SRS0=uP83TQ=G3=example.org=user@sluice.test"); got != "user@example.org" {
		t.Errorf("Reverse with a 6-character hash = %q", got)
	}
}

func TestHashCaseInsensitive(t *testing.T) {
	r := newRewriter(t, Config{})
	tests := map[string]string{
		"SRS0=UP83=G3=example.org=user@sluice.test":                      "user@example.org",
		"srs0=up83=g3=example.org=user@sluice.test":                      "user@example.org",
		"SRS0=UP83=G3=EXAMPLE.ORG=USER@SLUICE.TEST":                      "USER@EXAMPLE.ORG",
		"srs1=wxWN=HOP1.example==ABCD=g3=orig.example=alice@Sluice.Test": "SRS0=ABCD=g3=orig.example=alice@HOP1.example",
		"SRS0-uP83=G3=example.org=user@sluice.test":                      "user@example.org",
		"SRS0+uP83=G3=example.org=user@sluice.test":                      "user@example.org",
	}
	for addr, want := range tests {
		if got := mustReverse(t, r, addr); got != want {
			t.Errorf("Reverse(%q) = %q, want %q", addr, got, want)
		}
	}
}

// A message forwarded by hop1 (SRS0 at hop1), then by us, then by hop3,
// then by us again.
func TestSRS1Chain(t *testing.T) {
	hop1 := newRewriter(t, Config{Domain: "hop1.example", Secrets: []string{"hop1-secret"}})
	us := newRewriter(t, Config{})
	hop3 := newRewriter(t, Config{Domain: "hop3.example", Secrets: []string{"hop3-secret"}})

	const sender = "alice@orig.example"
	atHop1 := mustForward(t, hop1, sender)
	if !strings.HasPrefix(atHop1, "SRS0=") || !strings.HasSuffix(atHop1, "=orig.example=alice@hop1.example") {
		t.Fatalf("hop1 Forward = %q", atHop1)
	}
	rest := strings.TrimSuffix(strings.TrimPrefix(atHop1, "SRS0"), "@hop1.example")

	atUs := mustForward(t, us, atHop1)
	wantPrefix := "SRS1="
	wantSuffix := "=hop1.example=" + rest + "@sluice.test"
	if !strings.HasPrefix(atUs, wantPrefix) || !strings.HasSuffix(atUs, wantSuffix) || len(atUs) != len(wantPrefix)+4+len(wantSuffix) {
		t.Fatalf("Forward(%q) = %q, want SRS1=HHHH%s", atHop1, atUs, wantSuffix)
	}

	atHop3 := mustForward(t, hop3, atUs)
	if !strings.HasSuffix(atHop3, "=hop1.example="+rest+"@hop3.example") {
		t.Fatalf("hop3 Forward(%q) = %q, want the first hop kept", atUs, atHop3)
	}
	atUsAgain := mustForward(t, us, atHop3)
	if atUsAgain != atUs {
		t.Errorf("Forward(%q) = %q, want %q (first hop kept, rehashed with our secret)", atHop3, atUsAgain, atUs)
	}

	// Bounces walk back straight to the first hop, then to the sender.
	if got := mustReverse(t, hop3, atHop3); got != atHop1 {
		t.Errorf("hop3 Reverse(%q) = %q, want %q", atHop3, got, atHop1)
	}
	if got := mustReverse(t, us, atUsAgain); got != atHop1 {
		t.Errorf("Reverse(%q) = %q, want %q", atUsAgain, got, atHop1)
	}
	if got := mustReverse(t, hop1, atHop1); got != sender {
		t.Errorf("hop1 Reverse(%q) = %q, want %q", atHop1, got, sender)
	}
	// Our SRS1 is not something hop3 may reverse, nor we hop3's.
	if _, err := us.Reverse(strings.TrimSuffix(atHop3, "@hop3.example") + "@sluice.test"); !errors.Is(err, ErrBadHash) {
		t.Errorf("Reverse of hop3's SRS1 moved to our domain: err = %v, want ErrBadHash", err)
	}
}

func TestReverseNotSRS(t *testing.T) {
	r := newRewriter(t, Config{})
	for _, addr := range []string{
		"",
		"postmaster",
		"SRS0=uP83=G3=example.org=user", // no domain
		"SRS0=uP83=G3=example.org=user@other.test",
		"SRS0=uP83=G3=example.org=user@sluice.test.evil",
		"SRS0=uP83=G3=example.org=user@\u017fluice.test", // long s folds to s in Unicode only
		"user@sluice.test",
		"SRS2=uP83=G3=example.org=user@sluice.test",
		"SRS0_uP83=G3=example.org=user@sluice.test",
		"SRS0@sluice.test",
		"@sluice.test",
	} {
		if got, err := r.Reverse(addr); !errors.Is(err, ErrNotSRS) {
			t.Errorf("Reverse(%q) = %q, %v; want ErrNotSRS", addr, got, err)
		}
	}
}

func TestReverseMalformed(t *testing.T) {
	r := newRewriter(t, Config{})
	for _, addr := range []string{
		"SRS0=@sluice.test",
		"SRS0=uP83@sluice.test",
		"SRS0=uP83=G3@sluice.test",
		"SRS0=uP83=G3=example.org@sluice.test",
		"SRS0=uP83=G3=example.org=@sluice.test",
		"SRS0=uP83=G3==user@sluice.test",
		"SRS0=uP83==example.org=user@sluice.test",
		"SRS0==G3=example.org=user@sluice.test",
		"SRS0=uP83=G=example.org=user@sluice.test",
		"SRS0=uP83=G3X=example.org=user@sluice.test",
		"SRS0=uP83=G1=example.org=user@sluice.test", // 1 is not base32
		"SRS0=uP83=G\xc3=example.org=user@sluice.test",
		"SRS1=@sluice.test",
		"SRS1=WXwn@sluice.test",
		"SRS1=WXwn=hop1.example@sluice.test",
		"SRS1=WXwn=hop1.example=@sluice.test",
		"SRS1==hop1.example==abcd@sluice.test",
		"SRS1=WXwn==abcd@sluice.test",
	} {
		if got, err := r.Reverse(addr); !errors.Is(err, ErrMalformed) {
			t.Errorf("Reverse(%q) = %q, %v; want ErrMalformed", addr, got, err)
		}
	}
}

func TestForwardMalformed(t *testing.T) {
	r := newRewriter(t, Config{})
	for _, addr := range []string{
		"postmaster",
		"@example.org",
		"user@",
		"user@[192.0.2.1]",
		"user@exa=mple.org",
		"user@exa mple.org",
		"\"quoted user\"@example.org",
		"us\x00er@example.org",
		"us>er@example.org",
		"SRS1=@hop.example",
		"SRS1=hash@hop.example",
		"SRS1=hash=first.example@hop.example",
		"SRS1=hash=first.example=@hop.example",
		"SRS1=hash==rest@hop.example",
	} {
		if got, err := r.Forward(addr); !errors.Is(err, ErrMalformed) {
			t.Errorf("Forward(%q) = %q, %v; want ErrMalformed", addr, got, err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	good := Config{Domain: "sluice.test", Secrets: []string{"s"}}
	if _, err := New(good); err != nil {
		t.Fatalf("New(%+v): %v", good, err)
	}
	tests := map[string]func(*Config){
		"no domain":         func(c *Config) { c.Domain = "" },
		"domain with @":     func(c *Config) { c.Domain = "srs@sluice.test" },
		"domain with =":     func(c *Config) { c.Domain = "srs=sluice.test" },
		"no secrets":        func(c *Config) { c.Secrets = nil },
		"empty secret":      func(c *Config) { c.Secrets = []string{"s", ""} },
		"negative max age":  func(c *Config) { c.MaxAge = -day },
		"max age under day": func(c *Config) { c.MaxAge = time.Hour },
		"max age 1024 days": func(c *Config) { c.MaxAge = 1024 * day },
		"hash length 3":     func(c *Config) { c.HashLength = 3 },
		"hash length 28":    func(c *Config) { c.HashLength = 28 },
		"negative hash len": func(c *Config) { c.HashLength = -1 },
	}
	for name, change := range tests {
		c := good
		change(&c)
		if r, err := New(c); err == nil {
			t.Errorf("%s: New(%+v) = %v, want an error", name, c, r)
		}
	}
}

func TestIsSRS(t *testing.T) {
	tests := map[string]bool{
		"SRS0=uP83=G3=example.org=user@sluice.test": true,
		"srs0+x@anywhere": true,
		"Srs1-x@anywhere": true,
		"SRS1=WXwn=hop1.example==abcd=G3=o=a@sluice.test": true,
		"SRS0=x":             true,
		"SRS0@sluice.test":   false,
		"SRS0x=@sluice.test": false,
		"SRS2=x@sluice.test": false,
		"user@sluice.test":   false,
		"":                   false,
		"SRS0=x@":            true,
		"user@SRS0=x":        false,
	}
	for addr, want := range tests {
		if got := IsSRS(addr); got != want {
			t.Errorf("IsSRS(%q) = %v, want %v", addr, got, want)
		}
	}
}

func BenchmarkForward(b *testing.B) {
	r := newRewriter(b, Config{})
	for b.Loop() {
		if _, err := r.Forward("someone.long-ish+tag@mail.example.org"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReverse(b *testing.B) {
	r := newRewriter(b, Config{})
	addr, _ := r.Forward("someone.long-ish+tag@mail.example.org")
	for b.Loop() {
		if _, err := r.Reverse(addr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReverseSRS1(b *testing.B) {
	r := newRewriter(b, Config{})
	addr, _ := r.Forward("SRS0=abcd=G3=orig.example=alice@hop1.example")
	for b.Loop() {
		if _, err := r.Reverse(addr); err != nil {
			b.Fatal(err)
		}
	}
}

// The worst valid case during rotation: the address was signed with the
// last of three secrets.
func BenchmarkReverseRotated(b *testing.B) {
	old := newRewriter(b, Config{Secrets: []string{"third"}})
	r := newRewriter(b, Config{Secrets: []string{"first", "second", "third"}})
	addr, _ := old.Forward("someone.long-ish+tag@mail.example.org")
	for b.Loop() {
		if _, err := r.Reverse(addr); err != nil {
			b.Fatal(err)
		}
	}
}

// A forged address costs one HMAC per secret and is rejected.
func BenchmarkReverseForged(b *testing.B) {
	r := newRewriter(b, Config{})
	const addr = "SRS0=AAAA=G3=mail.example.org=someone.long-ish+tag@sluice.test"
	for b.Loop() {
		if _, err := r.Reverse(addr); !errors.Is(err, ErrBadHash) {
			b.Fatal(err)
		}
	}
}
