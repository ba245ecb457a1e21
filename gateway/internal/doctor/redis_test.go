package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/redistest"
)

// With [cluster] redis the doctor says whether Redis answers, logged in
// as the gateway is; without it, nothing about Redis.
func TestDoctorRedis(t *testing.T) {
	r := redistest.Start(t, redistest.User("sluice", "secret"))
	redisFinding := func(f *fixture) string {
		t.Helper()
		var found []string
		for _, fd := range f.run(t, f.zone(), nil) {
			if fd.Check == "Redis" {
				found = append(found, string(fd.Status)+" "+fd.Name+": "+fd.Message)
			}
		}
		if len(found) > 1 {
			t.Fatalf("more than one Redis finding: %q", found)
		}
		return strings.Join(found, "")
	}
	if got := redisFinding(newFixture(t, gatewayTOML, goodCert)); got != "" {
		t.Errorf("a Redis finding without [cluster] redis: %q", got)
	}
	cluster := fmt.Sprintf("\n[cluster]\nredis = [%q]\nredis_username = \"sluice\"\nredis_password_file = \"redis.pw\"\n", r.Addr())
	f := newFixture(t, gatewayTOML+cluster, goodCert)
	writeFile(t, f, "redis.pw", "secret\n")
	if got, want := redisFinding(f), "ok "+r.Addr()+": answers PING"; got != want {
		t.Errorf("Redis up: %q, want %q", got, want)
	}
	writeFile(t, f, "redis.pw", "wrong\n")
	if got := redisFinding(f); !strings.HasPrefix(got, "error "+r.Addr()+": does not answer") || !strings.Contains(got, "WRONGPASS") {
		t.Errorf("wrong password: %q", got)
	}
	writeFile(t, f, "redis.pw", "secret\n")
	r.Stop()
	if got := redisFinding(f); !strings.HasPrefix(got, "error "+r.Addr()+": does not answer: redis ping") {
		t.Errorf("Redis down: %q", got)
	}
}

// writeFile writes a file in the fixture's directory.
func writeFile(t *testing.T, f *fixture, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
