package main

import (
	"bytes"
	cryptorand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/freeport"
	"github.com/sluice-mail/sluice/gateway/internal/pebbletest"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// README.md's "Going live", on loopback, with the real binary: keygen,
// the configuration of step 3 (read from the README, example.com made
// example.test), `sluice check`, the records `sluice dns` prints
// published on a test DNS server, `sluice serve` getting its certificates
// from Pebble by TLS-ALPN-01 on port 443, and `sluice doctor` finding
// nothing wrong, the certificate being the one from the CA.
//
// Senders, the doctor and the CA all connect to port 443, so the HTTPS
// listener binds it, on an address of 127.0.1.0/24 of its own: that
// needs root (or CAP_NET_BIND_SERVICE), which CI has; elsewhere the test
// skips. Loopback has a single IPv6 address and Pebble validates at a
// name's first AAAA address, so [::1]:443 would be one port for every
// run on the machine: the gateway here is IPv4 only ([relay] ipv6 =
// false, no IPv6 source).
func TestGoingLive(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pebble and the binary")
	}
	ip := loopbackWith443(t)
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	dataDir := filepath.Join(dir, "data")

	// 1 and 2. The state directory, the SRS secret and the DKIM key, as
	// docs/deploy.md makes them; /var/lib/sluice is dataDir here.
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 24)
	cryptorand.Read(secret)
	if err := os.WriteFile(filepath.Join(dataDir, "srs-secrets"), []byte(base64.StdEncoding.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dataDir, "keys", "sluice.pem")
	if _, code := runSluice(t, bin, "keygen", "-selector", "sluice", "-domain", "example.test", "-out", key); code != 0 {
		t.Fatalf("keygen: exit %d", code)
	}

	// The world: DNS, empty until step 4, and an ACME CA that reaches
	// the names it finds there on port 443. Certificates live 90 days,
	// as Let's Encrypt's, so that the doctor finds no renewal due.
	zone := dnstest.Start(t, "")
	ca := pebbletest.Start(t, zone, 443, 90*24*time.Hour)
	roots := filepath.Join(dir, "pebble-root.pem")
	if err := os.WriteFile(roots, ca.RootPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	// 1 and 3. The configuration: the example make install writes, with
	// step 3's sections in it and smtp.tls_cert and tls_key deleted; then
	// this machine's addresses and paths, the test CA and DNS.
	cfg := goingLiveConfig(t, dataDir)
	delete(cfg["smtp"].(map[string]any), "tls_cert")
	delete(cfg["smtp"].(map[string]any), "tls_key")
	relay := cfg["relay"].(map[string]any)
	sources := relay["source"].([]map[string]any)
	if len(sources) != 2 || sources[0]["address"] != "203.0.113.25" || sources[1]["address"] != "2001:db8::25" {
		t.Fatalf("the README's [[relay.source]] are %v; update this test", sources)
	}
	sources[0]["address"] = ip
	relay["source"], relay["ipv6"] = sources[:1], false
	set := func(section, key string, value any) {
		if cfg[section] == nil {
			cfg[section] = map[string]any{}
		}
		cfg[section].(map[string]any)[key] = value
	}
	cfg["data_dir"] = dataDir // the default, /var/lib/sluice
	set("https", "listen", []string{ip + ":443"})
	set("tls", "acme_directory", ca.Directory)
	set("tls", "acme_ca_file", ca.CAFile)
	set("smtp", "listen", []string{fmt.Sprintf("%s:%d", ip, freeport.Port(t))})
	set("admin", "listen", "")
	set("dns", "nameservers", []string{zone.Addr()})
	set("wasm", "cache_dir", wasmbuild.CacheDirForTest())
	for _, p := range cfg["plugin"].([]map[string]any) {
		p["path"] = wasmbuild.ForTest(t, "./plugins/"+p["name"].(string))
	}
	var text bytes.Buffer
	if err := toml.NewEncoder(&text).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(cfgPath, text.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := runSluice(t, bin, "check", "-c", cfgPath); code != 0 || out != cfgPath+": OK\n" {
		t.Fatalf("sluice check: exit %d, %q\n%s", code, out, text.String())
	}

	// 4. The records, published.
	records, code := runSluice(t, bin, "dns", "-c", cfgPath)
	if code != 0 {
		t.Fatalf("sluice dns: exit %d", code)
	}
	if err := zone.SetRecords(records); err != nil {
		t.Fatalf("what sluice dns prints does not load as a zone: %v\n%s", err, records)
	}

	// 5. Start: the certificates come from the CA, for the hostname and
	// the MTA-STS policy host.
	serve := startServe(t, bin, cfgPath)
	for _, name := range []string{"mx.example.test", "mta-sts.example.test"} {
		serve.waitLog("acme: certificate in use", `"name":"`+name+`"`) // the example logs JSON
	}

	// 6. Everything checked: no error, no warning, and the certificate is
	// the CA's.
	out, code := runSluice(t, bin, "doctor", "-c", cfgPath, "-nameserver", zone.Addr(), "-ca-file", roots)
	certFile := filepath.Join(dataDir, "acme", "mx.example.test")
	for _, want := range []string{
		"ok     certificate " + certFile + ": names mx.example.test\n",
		"ok     certificate " + certFile + ": issued by Pebble Intermediate",
		"ok     MTA-STS     https://mta-sts.example.test/.well-known/mta-sts.txt: serves the policy (mode testing, mx mx.example.test, max_age 604800)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sluice doctor does not say %q", want)
		}
	}
	if code != 0 || !strings.HasSuffix(out, " ok, 0 warnings, 0 errors\n") {
		t.Errorf("sluice doctor: exit %d, want 0 and neither warnings nor errors", code)
	}
	t.Logf("sluice doctor said:\n%s", out)
	serve.stop()
}

// goingLiveConfig is the configuration README.md's "Going live" makes:
// deploy/gateway.toml as make install writes it, with the sections of
// step 3's ```toml block in it, their keys replacing the example's;
// example.com is example.test, and Sluice's state is in dataDir.
func goingLiveConfig(t *testing.T, dataDir string) map[string]any {
	t.Helper()
	names := strings.NewReplacer("example.com", "example.test", "/var/lib/sluice", dataDir)
	example, err := os.ReadFile(filepath.Join(moduleRoot, "deploy", "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg, step3 map[string]any
	if _, err := toml.Decode(names.Replace(string(example)), &cfg); err != nil {
		t.Fatalf("deploy/gateway.toml: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join(moduleRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "\n## Going live\n")
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "   ```toml\n")
	block, _, ok2 := strings.Cut(block, "   ```\n")
	if !ok || !ok2 {
		t.Fatal("README.md's Going live has no ```toml block")
	}
	var lines []string
	for line := range strings.Lines(block) {
		lines = append(lines, strings.TrimPrefix(line, "   "))
	}
	if _, err := toml.Decode(names.Replace(strings.Join(lines, "")), &step3); err != nil {
		t.Fatalf("README.md's Going live configuration: %v", err)
	}
	mergeTOML(cfg, step3)
	return cfg
}

// mergeTOML sets the keys of from in into, table by table, as an
// operator editing the file does.
func mergeTOML(into, from map[string]any) {
	for k, v := range from {
		sub, ok := v.(map[string]any)
		if dst, ok2 := into[k].(map[string]any); ok && ok2 {
			mergeTOML(dst, sub)
			continue
		}
		into[k] = v
	}
}

// loopbackWith443 returns an address of 127.0.1.0/24 whose port 443 is
// free, or skips the test when binding port 443 is not allowed.
func loopbackWith443(t *testing.T) string {
	t.Helper()
	for range 50 {
		ip := fmt.Sprintf("127.0.1.%d", 2+rand.IntN(250))
		l, err := net.Listen("tcp4", ip+":443")
		if errors.Is(err, syscall.EACCES) {
			t.Skipf("binding port 443 needs root or CAP_NET_BIND_SERVICE: %v", err)
		}
		if err == nil {
			l.Close()
			return ip
		}
	}
	t.Fatal("no address of 127.0.1.0/24 with port 443 free in 50 tries")
	return ""
}
