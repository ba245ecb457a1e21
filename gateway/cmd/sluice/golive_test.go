package main

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/freeport"
	"github.com/sluice-mail/sluice/gateway/internal/inbox"
	"github.com/sluice-mail/sluice/gateway/internal/pebbletest"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// README.md's "Going live", step by step, on loopback, with the real
// binary: the DKIM key made by the README's keygen command; the example
// configuration make install writes (deploy/gateway.toml) with the
// sections of step 3 (both read from the files, example.com made
// example.test) passing `sluice check`; the records `sluice dns` prints
// published on a test DNS server; `sluice serve` getting its certificates
// from Pebble by TLS-ALPN-01 on port 443; `sluice doctor` finding nothing
// wrong, printing the lines the README shows, the certificate being the
// CA's; and the README's `sluice send` arriving at the router's
// destination, signed and sealed.
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
	readme := goingLive(t, dataDir)
	_, keygen, _ := strings.Cut(readme, "\nsudo -u sluice sluice keygen ")
	keygen, _, _ = strings.Cut(keygen, "\n")
	if _, code := runSluice(t, bin, append([]string{"keygen"}, strings.Fields(keygen)...)...); code != 0 {
		t.Fatalf("sluice keygen %s: exit %d", keygen, code)
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
	cfg := goingLiveConfig(t, readme, dataDir)
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
	smtpAddr := fmt.Sprintf("%s:%d", ip, freeport.Port(t))
	set("smtp", "listen", []string{smtpAddr})
	mailbox, mailboxPort := startMailbox(t)
	set("relay", "port", mailboxPort)
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
	if out, code := runSluice(t, bin, "check", "-c", cfgPath); code != 0 || !strings.HasSuffix(out, cfgPath+": OK\n") {
		t.Fatalf("sluice check: exit %d, %q\n%s", code, out, text.String())
	}

	// 4. The records, published.
	records, code := runSluice(t, bin, "dns", "-c", cfgPath)
	if code != 0 {
		t.Fatalf("sluice dns: exit %d", code)
	}
	// With the mailbox's, which its provider publishes.
	records += "mailbox.example.net. 3600 IN MX 10 mx.mailbox.example.net.\nmx.mailbox.example.net. 3600 IN A 127.0.0.1\n"
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
	// the CA's. Pebble's root is not among the system's: -ca-file says
	// that the senders trust it.
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
	// The lines README.md shows are among them, but for the README's
	// IPv6 source, which adds two findings (its address and its FCrDNS).
	shown, count := goingLiveDoctorSample(t, readme)
	sample := strings.NewReplacer("203.0.113.25", ip, " ip6:2001:db8::25", "", ", 2001:db8::25", "")
	for _, line := range shown {
		if !strings.Contains(out, sample.Replace(line)+"\n") {
			t.Errorf("README.md's Going live shows\n%s\nsluice doctor says no such line", line)
		}
	}
	if want := fmt.Sprintf("\n%d ok, 0 warnings, 0 errors\n", count-2); !strings.HasSuffix(out, want) {
		t.Errorf("README.md's Going live ends with %d ok; sluice doctor does not end with %q", count, want)
	}
	t.Logf("sluice doctor said:\n%s", out)

	// 7. A test message, to the example's forwarding address, whose MX
	// is a capture inbox (on another port: the relay's is moved to it).
	send := goingLiveSend(t, readme)
	args := strings.Fields(strings.Replace(send, "-server mx.example.test:25", "-server "+smtpAddr, 1))
	if args[0] != "sluice" || args[1] != "send" || args[3] != smtpAddr {
		t.Fatalf("README.md's Going live sends with %q; update this test", send)
	}
	out, code = runSluice(t, bin, args[1:]...)
	if code != 0 || !strings.Contains(out, "DATA: 250 2.0.0 Stored as ") {
		t.Fatalf("%s: exit %d\n%s", send, code, out)
	}
	files, _ := inbox.Messages(mailbox)
	if len(files) != 1 {
		t.Fatalf("%d messages at the destination, want 1", len(files))
	}
	msg, _ := os.ReadFile(files[0])
	if !bytes.Contains(msg, []byte("\r\nDelivered-To: you@mailbox.example.net\r\n")) || !bytes.Contains(msg, []byte("\r\nARC-Seal: ")) {
		t.Errorf("the message is not for the router's destination, or not sealed:\n%s", msg)
	}
	res, err := resolver.New(resolver.Config{Nameservers: []string{zone.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(context.Background(), name) },
	})
	if err != nil || len(sigs) != 1 || sigs[0].Domain != "example.test" || sigs[0].Err != nil {
		t.Errorf("DKIM: %v, %+v; want one valid signature by example.test", err, sigs)
	}
	serve.stop()
}

// goingLive is README.md's "Going live" section, its lines unindented,
// with example.com made example.test and /var/lib/sluice dataDir.
func goingLive(t *testing.T, dataDir string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(moduleRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Going live\n")
	section, _, _ = strings.Cut(section, "\n## ")
	if !ok {
		t.Fatal("README.md has no ## Going live")
	}
	var lines []string
	for line := range strings.Lines(section) {
		lines = append(lines, strings.TrimPrefix(line, "   "))
	}
	return strings.NewReplacer("example.com", "example.test", "/var/lib/sluice", dataDir).Replace(strings.Join(lines, ""))
}

// goingLiveConfig is the configuration the README's Going live makes:
// deploy/gateway.toml as make install writes it, with the sections of
// step 3's ```toml block in it, their keys replacing the example's;
// example.com is example.test, and Sluice's state is in dataDir.
func goingLiveConfig(t *testing.T, readme, dataDir string) map[string]any {
	t.Helper()
	example, err := os.ReadFile(filepath.Join(moduleRoot, "deploy", "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg, step3 map[string]any
	names := strings.NewReplacer("example.com", "example.test", "/var/lib/sluice", dataDir)
	if _, err := toml.Decode(names.Replace(string(example)), &cfg); err != nil {
		t.Fatalf("deploy/gateway.toml: %v", err)
	}
	_, block, ok := strings.Cut(readme, "```toml\n")
	block, _, ok2 := strings.Cut(block, "```\n")
	if !ok || !ok2 {
		t.Fatal("README.md's Going live has no ```toml block")
	}
	if _, err := toml.Decode(block, &step3); err != nil {
		t.Fatalf("README.md's Going live configuration: %v", err)
	}
	mergeTOML(cfg, step3)
	return cfg
}

// goingLiveDoctorSample is what the README's Going live shows `sluice
// doctor` print, step 6: its lines of findings, and the number of ok
// findings of its last line.
func goingLiveDoctorSample(t *testing.T, readme string) ([]string, int) {
	t.Helper()
	var lines []string
	count := -1
	for line := range strings.Lines(readme) {
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, "ok     ") {
			lines = append(lines, line)
		}
		if strings.HasSuffix(line, " ok, 0 warnings, 0 errors") {
			count, _ = strconv.Atoi(strings.Fields(line)[0])
		}
	}
	if len(lines) < 5 || count < 0 {
		t.Fatalf("README.md's Going live shows %d lines of sluice doctor and no count; update this test", len(lines))
	}
	return lines, count
}

// goingLiveSend is the command of the README's Going live, step 7.
func goingLiveSend(t *testing.T, readme string) string {
	t.Helper()
	_, cmd, ok := strings.Cut(readme, "`sluice send ")
	cmd, _, ok2 := strings.Cut(cmd, "`")
	if !ok || !ok2 {
		t.Fatal("README.md's Going live has no `sluice send ...`")
	}
	return "sluice send " + cmd
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

// startMailbox runs a capture inbox on 127.0.0.1, standing in for the
// mailbox mail is forwarded to, and returns its directory and port.
func startMailbox(t *testing.T) (string, int) {
	t.Helper()
	port := freeport.Port(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	in := &inbox.Inbox{Dir: t.TempDir()}
	go in.Serve(l)
	t.Cleanup(func() { l.Close() })
	return in.Dir, port
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
