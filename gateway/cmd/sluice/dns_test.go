package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
)

// demoConfig copies the demo gateway.toml into a directory with extra
// appended, and makes its DKIM keys as `make run` does, with keygen.
func demoConfig(t *testing.T, extra string, keygen func(args ...string)) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(moduleRoot, "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gateway.toml")
	os.WriteFile(path, append(src, extra...), 0o644)
	for _, k := range []struct{ sel, alg string }{{"rsa-demo", "rsa"}, {"ed-demo", "ed25519"}} {
		keygen("keygen", "-algorithm", k.alg, "-selector", k.sel, "-domain", "your-domain.test", "-out", filepath.Join(dir, "var/keys", k.sel+".pem"))
	}
	return path
}

// runOK runs sluice in process and returns its output, failing on a
// non-zero exit.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("sluice %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String()
}

// `sluice dns` for the demo configuration: every line that is not a
// comment is a record miekg/dns parses, the DKIM records hold the public
// keys of the configured private keys, and -format json lists the same
// records.
func TestDNSDemoConfig(t *testing.T) {
	cfg := demoConfig(t, "", func(args ...string) { runOK(t, args...) })
	zone := runOK(t, "dns", "-c", cfg)
	var rrs []dns.RR
	for i, line := range strings.Split(strings.TrimSuffix(zone, "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		if !strings.Contains(line, " ; ") {
			t.Errorf("line %d has no comment: %s", i+1, line)
		}
		rr, err := dns.NewRR(line)
		if err != nil || rr == nil {
			t.Fatalf("line %d is not a record: %v\n%s", i+1, err, line)
		}
		rrs = append(rrs, rr)
	}
	types := map[string]int{}
	for _, rr := range rrs {
		types[dns.TypeToString[rr.Header().Rrtype]+" "+rr.Header().Name]++
	}
	for _, want := range []string{"MX your-domain.test.", "TXT your-domain.test.", "TXT _dmarc.your-domain.test.",
		"TXT _smtp._tls.your-domain.test.", "TXT rsa-demo._domainkey.your-domain.test.", "TXT ed-demo._domainkey.your-domain.test.", "TXT mx.your-domain.test."} {
		if types[want] != 1 {
			t.Errorf("%d records %s in\n%s", types[want], want, zone)
		}
	}
	// The DKIM records are the keys' own.
	dir := filepath.Dir(cfg)
	for _, sel := range []string{"rsa-demo", "ed-demo"} {
		key, err := dkim.LoadKey(filepath.Join(dir, "var/keys", sel+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		for _, rr := range rrs {
			if txt, ok := rr.(*dns.TXT); ok && txt.Hdr.Name == sel+"._domainkey.your-domain.test." {
				pub, err := dkim.PublicKey(strings.Join(txt.Txt, ""))
				if err != nil || !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
					t.Errorf("%s: the record is not the key's public key (%v)", sel, err)
				}
			}
		}
	}
	// JSON: the same records, in the same order.
	var list []struct {
		Name, Type, Value, Comment, Domain, Text string
		TTL                                      int
	}
	if err := json.Unmarshal([]byte(runOK(t, "dns", "-c", cfg, "-format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != len(rrs) {
		t.Fatalf("%d records in JSON, %d in the zone", len(list), len(rrs))
	}
	for i, r := range list {
		rr, err := dns.NewRR(r.Name + " " + strconv.Itoa(r.TTL) + " IN " + r.Type + " " + r.Value)
		if err != nil || rr.String() != rrs[i].String() || r.Comment == "" || r.Domain == "" {
			t.Errorf("JSON record %d: %+v (%v); the zone has %v", i, r, err, rrs[i])
		}
		if txt, ok := rrs[i].(*dns.TXT); ok && r.Text != strings.Join(txt.Txt, "") {
			t.Errorf("JSON record %d: text %q, want the TXT data unquoted and joined, %q", i, r.Text, strings.Join(txt.Txt, ""))
		}
	}
}

// A key file that cannot be read, and a bad -format, are errors.
func TestDNSErrors(t *testing.T) {
	cfg := demoConfig(t, "", func(args ...string) {})
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"dns", "-c", cfg}, nil, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "gateway.toml:") || !strings.Contains(stderr.String(), "rsa-demo.pem") {
		t.Errorf("dns without the key files: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"dns", "-format", "bind"}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `-format "bind" is neither zone nor json`) {
		t.Errorf("dns -format bind: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"doctor", "-format", "html"}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `-format "html" is neither text nor json`) {
		t.Errorf("doctor -format html: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"doctor", "-c", cfg, "-ca-file", cfg}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "sluice doctor: -ca-file: "+cfg+": no PEM certificate found") {
		t.Errorf("doctor -ca-file gateway.toml: exit %d, %q", code, stderr.String())
	}
}

// The real binary: publish what `sluice dns` prints on a loopback DNS
// server and `sluice doctor` finds no error (the demo's self-signed
// certificate is a warning) and exits 0; take the DKIM key away and it
// reports the error with the record to publish, and exits 1.
func TestDNSAndDoctorWithTheRealBinary(t *testing.T) {
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	sluice := func(args ...string) (string, int) { return runSluice(t, bin, args...) }
	cfg := demoConfig(t, "\n[[relay.source]]\naddress = \"127.0.0.1\"\n", func(args ...string) {
		if _, code := sluice(args...); code != 0 {
			t.Fatalf("keygen: exit %d", code)
		}
	})
	// Senders fetch an MTA-STS policy from port 443, which only root may
	// bind (TestGoingLive does; the doctor's fetch has its own tests):
	// publish none here, and so serve no HTTPS.
	src, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	unpublished := strings.NewReplacer("mode = \"testing\"", "mode = \"\"", "listen = [\"127.0.0.1:8443\"]", "listen = []").Replace(string(src))
	if strings.Count(string(src), "mode = \"testing\"")+strings.Count(string(src), "listen = [\"127.0.0.1:8443\"]") != 2 {
		t.Fatal("the demo gateway.toml no longer sets [mta_sts] mode; update this test")
	}
	os.WriteFile(cfg, []byte(unpublished), 0o644)
	zone, code := sluice("dns", "-c", cfg)
	if code != 0 {
		t.Fatalf("sluice dns: exit %d", code)
	}
	srv := dnstest.Start(t, zone)

	out, code := sluice("doctor", "-c", cfg, "-nameserver", srv.Addr())
	if code != 0 || !strings.Contains(out, "ok     DKIM        rsa-demo._domainkey.your-domain.test: the published key matches the private key\n") ||
		!strings.Contains(out, "ok     FCrDNS      127.0.0.1: mx.your-domain.test resolves back to it") || !strings.HasSuffix(out, " warnings, 0 errors\n") {
		t.Errorf("sluice doctor on the published zone: exit %d\n%s", code, out)
	}

	var without []string
	for _, line := range strings.Split(zone, "\n") {
		if !strings.HasPrefix(line, "rsa-demo._domainkey.") {
			without = append(without, line)
		}
	}
	if err := srv.SetRecords(strings.Join(without, "\n")); err != nil {
		t.Fatal(err)
	}
	out, code = sluice("doctor", "-c", cfg, "-nameserver", srv.Addr(), "-format", "json")
	var findings []struct {
		Status, Check, Name, Message string
		Fix                          []string
	}
	if err := json.Unmarshal([]byte(out), &findings); err != nil {
		t.Fatalf("doctor -format json: %v\n%s", err, out)
	}
	found := false
	for _, f := range findings {
		if f.Status == "error" && f.Check == "DKIM" && f.Name == "rsa-demo._domainkey.your-domain.test" {
			found = len(f.Fix) == 1 && strings.HasPrefix(f.Fix[0], "rsa-demo._domainkey.your-domain.test. 3600 IN TXT \"v=DKIM1; k=rsa; p=")
		}
	}
	if code != 1 || !found {
		t.Errorf("sluice doctor without the DKIM key: exit %d, want 1 and the DKIM error with its record\n%s", code, out)
	}
}

// -nameserver takes an address, with or without a port, or a name.
func TestDoctorNameserverAddr(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1": "127.0.0.1:53", "127.0.0.1:5353": "127.0.0.1:5353", "::1": "[::1]:53", "[::1]:5353": "[::1]:5353"} {
		if got, err := nameserverAddr(context.Background(), in); err != nil || got != want {
			t.Errorf("nameserverAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := nameserverAddr(context.Background(), "localhost:5353"); err != nil || !strings.HasSuffix(got, ":5353") {
		t.Errorf("nameserverAddr(localhost:5353) = %q, %v", got, err)
	}
}

// A served domain's own key: `sluice keygen -domain` prints its record,
// `sluice dns` prints it at that domain and the gateway's keys at the
// gateway's, and `sluice doctor` checks each published key against its
// file.
func TestDNSKeysPerDomain(t *testing.T) {
	cfg := demoConfig(t, `
[[dkim.key]]
domain = "second.test"
selector = "s2"
file = "var/keys/second.pem"
`, func(args ...string) { runOK(t, args...) })
	src, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Two served domains, and no MTA-STS policy to fetch from port 443
	// (as in TestDNSAndDoctorWithTheRealBinary).
	edited := strings.NewReplacer(`domains = ["your-domain.test"]`, `domains = ["your-domain.test", "second.test"]`,
		"mode = \"testing\"", "mode = \"\"", "listen = [\"127.0.0.1:8443\"]", "listen = []").Replace(string(src))
	if !strings.Contains(edited, `"second.test"]`) {
		t.Fatal("the demo gateway.toml no longer sets domains on one line; update this test")
	}
	os.WriteFile(cfg, []byte(edited), 0o644)
	printed := runOK(t, "keygen", "-algorithm", "ed25519", "-selector", "s2", "-domain", "second.test", "-out", filepath.Join(filepath.Dir(cfg), "var/keys/second.pem"))
	record := strings.Replace(strings.TrimSuffix(printed, "\n"), " IN TXT ", " 3600 IN TXT ", 1)

	zone := runOK(t, "dns", "-c", cfg)
	var dkimNames []string
	for _, line := range strings.Split(zone, "\n") {
		if name, _, ok := strings.Cut(line, " "); ok && strings.Contains(name, "._domainkey.") {
			dkimNames = append(dkimNames, name)
		}
	}
	want := []string{"rsa-demo._domainkey.your-domain.test.", "ed-demo._domainkey.your-domain.test.", "s2._domainkey.second.test."}
	if !slices.Equal(dkimNames, want) {
		t.Errorf("DKIM records %v, want %v in\n%s", dkimNames, want, zone)
	}
	if !strings.Contains(zone, "\n"+record+" ; DKIM: the public key of selector s2, which receivers verify Sluice's d=second.test signatures with\n") {
		t.Errorf("sluice dns does not print the record keygen printed, %q, in\n%s", record, zone)
	}

	srv := dnstest.Start(t, zone)
	doctor := func() string {
		var stdout, stderr bytes.Buffer
		run(context.Background(), []string{"doctor", "-c", cfg, "-nameserver", srv.Addr()}, nil, &stdout, &stderr)
		return stdout.String()
	}
	out := doctor()
	for _, name := range []string{"rsa-demo._domainkey.your-domain.test", "ed-demo._domainkey.your-domain.test", "s2._domainkey.second.test"} {
		if !strings.Contains(out, "ok     DKIM        "+name+": the published key matches the private key\n") {
			t.Errorf("sluice doctor does not find %s good:\n%s", name, out)
		}
	}
	// second.test publishes the gateway's key under s2: the doctor says so.
	wrong := strings.Replace(zone, strings.Split(record, " IN TXT ")[1], recordValue(t, zone, "ed-demo._domainkey.your-domain.test."), 1)
	if err := srv.SetRecords(wrong); err != nil {
		t.Fatal(err)
	}
	if out := doctor(); !strings.Contains(out, "error  DKIM        s2._domainkey.second.test: the published key is not the key in the [[dkim.key]] file") {
		t.Errorf("sluice doctor with another key published under s2._domainkey.second.test:\n%s", out)
	}
}

// recordValue is the TXT data of the record name in zone, as written there.
func recordValue(t *testing.T, zone, name string) string {
	t.Helper()
	for _, line := range strings.Split(zone, "\n") {
		if strings.HasPrefix(line, name+" ") {
			value, _, _ := strings.Cut(strings.SplitN(line, " IN TXT ", 2)[1], " ; ")
			return value
		}
	}
	t.Fatalf("no %s in\n%s", name, zone)
	return ""
}
