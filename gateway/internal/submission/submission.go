// Package submission holds the users of the message submission service
// (issue 15): who may log in, with which password, and as which
// addresses they may send; and the throttling of failed logins, counted
// in the key-value store so that it holds across the nodes of a cluster.
package submission

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/login"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
)

// User is one login: a name, a bcrypt or argon2id hash, and the senders
// it may use, as config validated and normalised them: "local@domain",
// or "*@domain" for every address of the domain, the domain in the form
// address.Domain returns.
type User struct {
	Name, PasswordHash string
	Senders            []string
}

// Config is what New builds the users from.
type Config struct {
	Users []User
	// MaxFailuresPerIP failed logins from one client (an IPv4 address,
	// an IPv6 /64), or MaxFailuresPerUser for one user name, within one
	// FailureWindow make further logins wait (454 4.7.0) until the window
	// ends. All three must be positive.
	MaxFailuresPerIP, MaxFailuresPerUser int
	FailureWindow                        time.Duration
	// KV counts the failures: the gateway's MemoryKV, or Redis shared by
	// the nodes of a cluster.
	KV plugin.KV
	// Logger gets a line per login; nil: none.
	Logger *slog.Logger
	// Metrics count the logins; nil counts nothing. Made once per
	// process and shared by every generation's Users.
	Metrics *Metrics
	// Now is the clock of the verification cache and of the throttled
	// error lines; nil means time.Now.
	Now func() time.Time
}

// kvScope is where the failure counters live in the KV: a scope no
// plugin can have (a plugin's scope is its name, which matches
// ^[a-z0-9][a-z0-9_-]*$), so no plugin can read or reset them.
const kvScope = "#submission"

// LogFailed is the message of the log line for each failed login, which
// the fail2ban filter (deploy/fail2ban/sluice-submission.conf) matches;
// the client's address follows it, in the attribute "client".
const LogFailed = "submission login failed"

// Users checks logins and senders. It is immutable but for its counters
// and cache: a reload makes new Users.
type Users struct {
	users   map[string]User
	dummy   string // verified for unknown names, so they take as long as known ones
	maxIP   int64
	maxUser int64
	window  time.Duration
	kv      plugin.KV
	log     *slog.Logger
	metrics *Metrics
	// verifying bounds the verifications in progress: argon2id takes
	// 64 MiB each, so a flood of logins must not run them all at once.
	verifying chan struct{}
	// verifyWait bounds the wait for a turn: behind a flood of logins a
	// real user gets 454 and retries, rather than hold its connection
	// for as long as the flood lasts.
	verifyWait time.Duration
	cache      *cache
	kvErrors   plugin.KVFailureLog
	now        func() time.Time
}

// New checks the users' hashes and returns them.
func New(c Config) (*Users, error) {
	if c.KV == nil {
		return nil, errors.New("submission: a KV is needed to count failed logins")
	}
	if c.MaxFailuresPerIP <= 0 || c.MaxFailuresPerUser <= 0 || c.FailureWindow <= 0 {
		return nil, errors.New("submission: the failure limits and window must be positive")
	}
	u := &Users{
		users:     map[string]User{},
		maxIP:     int64(c.MaxFailuresPerIP),
		maxUser:   int64(c.MaxFailuresPerUser),
		window:    c.FailureWindow,
		kv:        c.KV,
		log:       c.Logger,
		metrics:   c.Metrics,
		verifying: make(chan struct{}, verifySlots(runtime.NumCPU())),

		verifyWait: maxVerifyWait,
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.now = c.Now
	if u.now == nil {
		u.now = time.Now
	}
	cache, err := newCache(u.now)
	if err != nil {
		return nil, err
	}
	u.cache = cache
	for _, usr := range c.Users {
		if err := login.CheckHash(usr.PasswordHash); err != nil {
			return nil, fmt.Errorf("submission user %q: %v", usr.Name, err)
		}
		if _, dup := u.users[usr.Name]; dup {
			return nil, fmt.Errorf("submission user %q is listed twice", usr.Name)
		}
		u.users[usr.Name] = usr
		// An argon2id hash if there is one: it is the slower kind, so
		// an unknown name costs at least what a known one does.
		if strings.HasPrefix(usr.PasswordHash, "$argon2id$") || u.dummy == "" {
			u.dummy = usr.PasswordHash
		}
	}
	return u, nil
}

// The replies of RFC 4954 §6.
var (
	errInvalid = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authentication credentials invalid"}
	errThrottled = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many failed logins; try again later"}
	errTemporary = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Temporary authentication failure"}
)

// Authenticate checks a login from client: nil for a good one, else an
// *smtp.SMTPError to reply with. Each login is counted as a failure
// before its password is verified (reserve), and given back if it turns
// out not to be one: read first and counted after, logins started
// together would all pass the limit, as many as the client can open
// connections. A throttled login costs no hash and never says whether
// its password was right.
func (u *Users) Authenticate(ctx context.Context, client netip.Addr, name, password string) error {
	ipKey, userKey := clientKey(client), userKey(name)
	n, reserved, throttled, err := u.reserve(ctx, ipKey, userKey)
	if err != nil {
		// Uncounted, the login could not be throttled: it is not
		// verified, and the failure is ours.
		u.kvFailed("submission login not checked: the failure counters cannot be counted", client, name, err)
		u.release(ctx, client, name, reserved)
		u.metrics.count(resultError)
		return errTemporary
	}
	if throttled != "" {
		u.release(ctx, client, name, reserved)
		// At debug only: a throttled login costs its sender nothing, so
		// a line for each would let anyone fill the log. The line when
		// throttling starts (below) says it, once a window.
		u.log.Debug("submission login throttled", "client", client.String(), "user", name, "by", throttled)
		u.metrics.count(resultThrottled)
		return errThrottled
	}
	ok, err := u.verify(ctx, name, password)
	if err != nil {
		u.release(ctx, client, name, reserved)
		u.metrics.count(resultError)
		return errTemporary
	}
	if ok {
		u.release(ctx, client, name, reserved)
		u.log.Info("submission login", "client", client.String(), "user", name)
		u.metrics.count(resultSuccess)
		return nil
	}
	// The client first, right after the message, where the fail2ban
	// filter looks for it.
	u.log.Warn(LogFailed, "client", client.String(), "user", name)
	u.metrics.count(resultFailure)
	for _, k := range []struct {
		by, value string
		n, max    int64
	}{{"client", client.String(), n[0], u.maxIP}, {"user", name, n[1], u.maxUser}} {
		if k.n == k.max {
			// Once a window, on the node whose failure reached the
			// limit. Not LogFailed: a user throttled by someone else's
			// guesses must not get its own client banned by fail2ban.
			u.log.Warn("submission logins throttled", "by", k.by, k.by, k.value, "failures", k.n, "window", u.window.String())
		}
	}
	return errInvalid
}

// reserve counts a login as failed for its client, then for its user
// name, with the KV's atomic increment, and returns the counts and the
// keys it counted under. It names the key that is over its limit
// ("client" or "user"), or "" when neither is; a throttled client's
// login stops there, so that it makes no counter for the names it tries:
// a throttled login costs nothing, and could otherwise fill the KV.
func (u *Users) reserve(ctx context.Context, ipKey, userKey string) (n [2]int64, reserved []string, throttled string, err error) {
	for i, k := range []struct {
		key, name string
		max       int64
	}{{ipKey, "client", u.maxIP}, {userKey, "user", u.maxUser}} {
		if n[i], err = u.kv.Incr(ctx, kvScope, k.key, 1, u.window); err != nil {
			return n, reserved, "", err
		}
		reserved = append(reserved, k.key)
		if n[i] > k.max {
			return n, reserved, k.name, nil
		}
	}
	return n, reserved, "", nil
}

// release gives back what reserve counted, for a login that did not
// fail. A counter whose window ended meanwhile starts the next one at
// -1, one guess more in that window: not worth a script of its own.
func (u *Users) release(ctx context.Context, client netip.Addr, name string, keys []string) {
	for _, key := range keys {
		if _, err := u.kv.Incr(ctx, kvScope, key, -1, u.window); err != nil {
			// Counted as a failure that was not one: the client or user
			// is throttled one failure early, in this window only.
			u.kvFailed("submission login counted as failed: the failure counters cannot be counted", client, name, err)
			return
		}
	}
}

// verifySlots is how many verifications run at once on ncpu CPUs: one
// per four, at least two. An argon2id verification of `sluice passwd`'s
// hashes runs on four threads (p=4) and takes 64 MiB, so a quarter of
// the CPUs keeps them all busy; one slot per CPU took as much CPU and four
// times the memory (about 6 GiB at peak on 32 CPUs, RATIONALE.md).
func verifySlots(ncpu int) int { return max(2, ncpu/4) }

// maxVerifyWait is how long a login waits for its turn to be verified:
// several hashes' time, far less than a client waits for its reply.
const maxVerifyWait = 10 * time.Second

// errBusy is verify's error when no turn came within verifyWait.
var errBusy = errors.New("no turn to verify the password")

// verify checks name's password, against the dummy hash for a name that
// is not a user, so that the time taken does not tell which names exist.
// Its error is ctx's, when it ended while waiting its turn, or errBusy.
func (u *Users) verify(ctx context.Context, name, password string) (bool, error) {
	usr, known := u.users[name]
	hash := usr.PasswordHash
	if !known {
		hash = u.dummy
	}
	if known && u.cache.hit(name, password, hash) {
		return true, nil
	}
	wait := time.NewTimer(u.verifyWait)
	defer wait.Stop()
	select {
	case u.verifying <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-wait.C:
		return false, errBusy
	}
	ok := login.Verify(hash, password)
	<-u.verifying
	if ok && known {
		u.cache.add(name, password, hash)
	}
	return ok && known, nil
}

// kvFailed logs a failure of the KV, at most once in plugin.KVLogEvery:
// each login it fails is counted
// (sluice_submission_logins_total{result="error"}).
func (u *Users) kvFailed(msg string, client netip.Addr, name string, err error) {
	if missed, ok := u.kvErrors.Due(u.now()); ok {
		u.log.Error(msg, "client", client.String(), "user", name, "error", err, "failures_not_logged", missed)
	}
}

// clientKey is the counter of a client: its IPv4 address, or its IPv6
// /64, as a host is given a whole /64 and can use any address in it.
func clientKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + a.String()
}

// maxNameKey bounds how much of a name a counter's key takes: a longer
// name is counted by its hash, so a guesser cannot make keys of
// kilobytes.
const maxNameKey = 128

// userKey is the counter of a user name, known or not.
func userKey(name string) string {
	if len(name) > maxNameKey {
		sum := sha256.Sum256([]byte(name))
		return fmt.Sprintf("user#%x", sum)
	}
	return "user:" + name
}

// MaySend reports whether user may send as addr, in the envelope or in
// From. "*@domain" allows every local part at domain; an address allows
// itself, its domain compared as address.Domain normalises it (U-labels
// or A-labels) and its local part without regard to case: RFC 5321 lets
// the receiving host decide, and every mailbox provider treats
// Info@ and info@ as one mailbox, so a user would not expect a refusal
// for writing it otherwise.
func (u *Users) MaySend(user, addr string) bool {
	usr, ok := u.users[user]
	if !ok {
		return false
	}
	local, domain, err := address.Split(addr)
	if err != nil {
		return false
	}
	for _, s := range usr.Senders {
		at := strings.LastIndexByte(s, '@')
		if at < 0 || s[at+1:] != domain {
			continue
		}
		if p := s[:at]; p == "*" || strings.EqualFold(p, local) {
			return true
		}
	}
	return false
}

// cacheTTL is how long a verified login is remembered. A client like
// Gmail's "Send mail as" logs in for every message; without the cache
// each costs an argon2id hash (64 MiB, tens of milliseconds of CPU).
const cacheTTL = 5 * time.Minute

// maxCached bounds the cache; past it, logins are verified afresh.
const maxCached = 1024

// cache remembers successful logins for cacheTTL, by an HMAC of the
// name, password and hash under a key of its own, made when the cache
// is: the password is not kept, the entry of a changed hash is never
// found, and a reload (new Users) starts empty.
type cache struct {
	key []byte
	now func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]time.Time // expiry
}

func newCache(now func() time.Time) (*cache, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &cache{key: key, now: now, entries: map[[sha256.Size]byte]time.Time{}}, nil
}

func (c *cache) sum(name, password, hash string) [sha256.Size]byte {
	m := hmac.New(sha256.New, c.key)
	for _, s := range []string{name, password, hash} {
		// Lengths first, so that no two triples run together alike.
		fmt.Fprintf(m, "%d:%s", len(s), s)
	}
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

func (c *cache) hit(name, password, hash string) bool {
	k := c.sum(name, password, hash)
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.entries[k]
	if ok && !c.now().Before(exp) {
		delete(c.entries, k)
		return false
	}
	return ok
}

func (c *cache) add(name, password, hash string) {
	k := c.sum(name, password, hash)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCached {
		for e, exp := range c.entries {
			if !now.Before(exp) {
				delete(c.entries, e)
			}
		}
		if len(c.entries) >= maxCached {
			return
		}
	}
	c.entries[k] = now.Add(cacheTTL)
}
