// Package pebbletest runs Pebble, Let's Encrypt's ACME test server, for
// tests: the pebble tool of go.mod, on loopback, validating TLS-ALPN-01
// challenges at the addresses a test DNS server gives.
package pebbletest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/freeport"
	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
)

// Pebble is a running pebble.
type Pebble struct {
	Directory string         // the ACME directory URL
	CAFile    string         // PEM of the CA its HTTPS is signed by (tls.acme_ca_file)
	Roots     *x509.CertPool // the root its certificates chain to
	RootPEM   []byte         // that root, in PEM
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary is the pebble tool of go.mod, built once into the build cache
// by the go command.
func binary(t testing.TB) string {
	binOnce.Do(func() {
		out, err := exec.Command("go", "tool", "-n", "pebble").Output()
		if err != nil {
			binErr = fmt.Errorf("go tool -n pebble: %v", err)
			return
		}
		binPath = strings.TrimSpace(string(out))
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// httpsCert writes the certificate pebble's HTTPS presents, for
// 127.0.0.1 and localhost, with its key, and the CA that issued it.
func httpsCert(t testing.TB, dir string) (certFile, keyFile, caFile string) {
	t.Helper()
	ca, err := certs.NewCA("sluice test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(time.Now().Add(24*time.Hour), "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	chain, key, err := certs.PEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	for _, f := range []struct {
		name string
		data []byte
	}{{certFile, chain}, {keyFile, key}, {caFile, ca.PEM()}} {
		if err := os.WriteFile(f.name, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, caFile
}

// Start runs pebble on loopback until the test ends: it validates
// TLS-ALPN-01 challenges by connecting to tlsPort at the address dns
// gives for each name, and issues certificates valid for validity. It
// returns once pebble serves its directory and root.
func Start(t testing.TB, dns *dnstest.Server, tlsPort int, validity time.Duration) *Pebble {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	certFile, keyFile, caFile := httpsCert(t, dir)
	listen, mgmt := freeport.Port(t), freeport.Port(t)
	var conf struct {
		Pebble map[string]any `json:"pebble"`
	}
	conf.Pebble = map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", listen),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                freeport.Port(t), // http-01 is never used
		"tlsPort":                 tlsPort,
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles":                map[string]any{"default": map[string]any{"validityPeriod": int(validity / time.Second)}},
	}
	b, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", confFile, "-dnsserver", dns.Addr())
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("pebble's log:\n%s", out.String())
		}
	})

	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca}}, Timeout: 5 * time.Second}
	get := func(url string) ([]byte, error) {
		resp, err := client.Get(url)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("%s: %s", url, resp.Status)
		}
		return io.ReadAll(resp.Body)
	}
	p := &Pebble{Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", listen), CAFile: caFile}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := get(p.Directory)
		if err == nil {
			p.RootPEM, err = get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmt))
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble does not serve its directory and root: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Roots = x509.NewCertPool()
	if !p.Roots.AppendCertsFromPEM(p.RootPEM) {
		t.Fatalf("pebble's root is not PEM:\n%s", p.RootPEM)
	}
	return p
}
