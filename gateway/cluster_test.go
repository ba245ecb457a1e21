package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/sluice-mail/sluice/gateway"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/redistest"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// clusterPlugins is a rate limit of 3 messages an hour per client, then
// the router.
func clusterPlugins(t *testing.T) string {
	return fmt.Sprintf(`
[[plugin]]
name = "ratelimit"
path = %q
capabilities = ["kv"]
[[plugin.config.limit]]
count = "client"
max = 3
per = "1h"
%s`, wasmbuild.ForTest(t, "./plugins/ratelimit"), routerPlugin(t))
}

// Two gateways with the same [cluster] redis share the plugins' store: a
// client's 3 messages an hour are counted across both, and the counter
// is in Redis under the prefix and the plugin's name.
func TestClusterSharesKV(t *testing.T) {
	r := redistest.Start(t)
	cluster := fmt.Sprintf("[cluster]\nredis = [%q]\nredis_key_prefix = \"test:\"\n", r.Addr())
	a := startEnv(t, envOptions{plugins: clusterPlugins(t), sections: cluster})
	b := startEnv(t, envOptions{plugins: clusterPlugins(t), sections: cluster})
	for i, e := range []*env{a, b, a} {
		if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", "Subject: hi\r\n\r\nhi\r\n"); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	// The fourth, on either node, is over the limit; a reload (a new
	// generation) keeps the same store.
	if err := a.gw.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*env{b, a} {
		err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", "Subject: hi\r\n\r\nhi\r\n")
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 450 {
			t.Errorf("fourth message: %v, want 450", err)
		}
	}
	if keys := r.CLI("--scan", "--pattern", "test:ratelimit:*"); strings.TrimSpace(keys) == "" {
		t.Errorf("no ratelimit key under test:ratelimit: in Redis; keys: %s", r.CLI("--scan"))
	}
	for _, e := range []*env{a, b} {
		if got := scrape(t, e)[`sluice_kv_redis_requests_total{op="incr",result="ok"}`]; got == 0 {
			t.Errorf(`sluice_kv_redis_requests_total{op="incr",result="ok"} = 0`)
		}
	}
}

// A gateway starts while Redis is down: the plugin's failure policy
// answers (451 4.3.0 by default) and the failure is counted; once Redis is
// up, the same gateway uses it, without a restart.
func TestClusterRedisDownAtStart(t *testing.T) {
	r := redistest.Start(t)
	r.Stop()
	e := startEnv(t, envOptions{plugins: clusterPlugins(t), sections: fmt.Sprintf("[cluster]\nredis = [%q]\n", r.Addr())})
	err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", "Subject: hi\r\n\r\nhi\r\n")
	wantReply(t, "Redis down", err, 451, smtp.EnhancedCode{4, 3, 0}, "")
	m := scrape(t, e)
	if m[`sluice_kv_redis_requests_total{op="incr",result="error"}`]+m[`sluice_kv_redis_requests_total{op="incr",result="timeout"}`] == 0 {
		t.Error("the failed call is not counted")
	}
	r.Start()
	if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", "Subject: hi\r\n\r\nhi\r\n"); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}
}

// A password or CA file that cannot be read is an error at its line, as
// a DKIM key file is; the check does not connect to Redis (there is none
// at the address).
func TestClusterFileErrors(t *testing.T) {
	e := prepareEnv(t, envOptions{sections: `
[cluster]
redis = ["127.0.0.1:1"]
redis_password_file = "missing-password"
redis_tls = true
redis_tls_ca_file = "missing-ca.pem"
`})
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	err = gateway.Check(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), e.cfgPath+":") || !strings.Contains(err.Error(), "cluster.redis_password_file") {
		t.Fatalf("check = %v, want the password file's error at its line", err)
	}
	// With the password readable, the CA file is next.
	if err := os.WriteFile(filepath.Join(filepath.Dir(e.cfgPath), "missing-password"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = gateway.Check(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "cluster.redis_tls_ca_file") {
		t.Fatalf("check = %v, want the CA file's error", err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(e.cfgPath), "missing-ca.pem"), redistest.Start(t, redistest.TLS()).CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := gateway.Check(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("check with both files, Redis absent: %v", err)
	}
}

// Sentinels with a login of their own, and an ACL user on the master:
// each is logged in to with its own password file, so that a rate limit
// counts on the master the Sentinels name.
func TestClusterSentinelLogin(t *testing.T) {
	m := redistest.Start(t, redistest.User("sluice", "master-pw"))
	s := redistest.StartSentinel(t, "main", m)
	s.CLI("ACL", "SETUSER", "default", "resetpass", ">sentinel-pw")
	dir := t.TempDir()
	for name, pw := range map[string]string{"master": "master-pw\n", "sentinel": "sentinel-pw\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(pw), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := startEnv(t, envOptions{plugins: clusterPlugins(t), sections: fmt.Sprintf(`
[cluster]
redis = [%q]
redis_sentinel_master = "main"
redis_sentinel_password_file = %q
redis_username = "sluice"
redis_password_file = %q
`, s.Addr(), filepath.Join(dir, "sentinel"), filepath.Join(dir, "master"))})
	if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", "Subject: hi\r\n\r\nhi\r\n"); err != nil {
		t.Fatal(err)
	}
	if keys := m.CLI("--user", "sluice", "--pass", "master-pw", "--no-auth-warning", "--scan", "--pattern", "sluice:ratelimit:*"); strings.TrimSpace(keys) == "" {
		t.Error("no ratelimit key on the master")
	}
}

// A Redis that refuses the login (or is down) at start is in the log
// within seconds, before any mail; one that answers says so.
func TestClusterRedisCheckedAtStart(t *testing.T) {
	r := redistest.Start(t, redistest.Password("right"))
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf("[cluster]\nredis = [%q]\nredis_password_file = %q\n", r.Addr(), pw)
	e := startEnv(t, envOptions{plugins: clusterPlugins(t), sections: section})
	waitLog(t, e, `msg="Redis does not answer`, "WRONGPASS")
	if err := os.WriteFile(pw, []byte("right\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, startEnv(t, envOptions{plugins: clusterPlugins(t), sections: section}), `msg="Redis answers"`)
}

// waitLog waits up to 20 s for a line of e's log with all of want.
func waitLog(t *testing.T, e *env, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			found := true
			for _, w := range want {
				found = found && strings.Contains(line, w)
			}
			if found {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q:\n%s", want, e.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
