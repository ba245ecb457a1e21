package acmecert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return l.Addr().String()
}

func newTest(t *testing.T, cfg Config) *Manager {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "acme")
	}
	cfg.Hostname = "mx.ours.test"
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Directory == "" {
		cfg.Directory = "https://" + closedPort(t) + "/dir"
	}
	m, err := New(cfg, []string{"mx.ours.test", "mta-sts.ours.test"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Before a certificate is obtained, STARTTLS presents the stand-in and
// the HTTPS listener nothing; no name but the configured ones is ever
// asked of the CA.
func TestBeforeTheFirstCertificate(t *testing.T) {
	m := newTest(t, Config{})
	c, err := m.STARTTLSCertificate(&tls.ClientHelloInfo{})
	if err != nil || c == nil || len(c.Certificate) == 0 {
		t.Fatalf("STARTTLS certificate before issuance: %v %v", c, err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || leaf.Subject.CommonName != "mx.ours.test" || leaf.Issuer.CommonName != "mx.ours.test" {
		t.Errorf("stand-in %v %v, want self-signed for mx.ours.test", leaf, err)
	}
	for _, name := range []string{"mx.ours.test", "mta-sts.ours.test", "other.ours.test", ""} {
		if c, err := m.HTTPSCertificate(&tls.ClientHelloInfo{ServerName: name}); err == nil {
			t.Errorf("HTTPS for %q before issuance: %v, want no certificate", name, c)
		}
	}
	if err := m.hostPolicy(context.Background(), "other.ours.test"); err == nil {
		t.Error("the host policy allows other.ours.test")
	}
	if err := m.hostPolicy(context.Background(), "mta-sts.ours.test"); err != nil {
		t.Error(err)
	}
	m.SetNames([]string{"mx.ours.test"})
	if err := m.hostPolicy(context.Background(), "mta-sts.ours.test"); err == nil {
		t.Error("the host policy allows a name no longer wanted")
	}
}

// A CA that cannot be reached: each attempt fails, is reported, and is
// retried after a growing wait; Run ends with its context.
func TestRunRetriesFailures(t *testing.T) {
	var mu sync.Mutex
	failed := map[string]int{}
	var logs syncbuf.Buffer
	m := newTest(t, Config{
		RetryMin: 10 * time.Millisecond,
		RetryMax: 40 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		Failed: func(name string, err error) {
			mu.Lock()
			failed[name]++
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n, o := failed["mx.ours.test"], failed["mta-sts.ours.test"]
		mu.Unlock()
		if n >= 3 && o >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("failures counted: %v", failed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "acme: cannot get a certificate; retrying") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// The cache tells of each certificate stored, and only of certificates;
// every file is the user's alone.
func TestCacheObservesCertificates(t *testing.T) {
	var seen []string
	m := newTest(t, Config{Observe: func(name string, leaf *x509.Certificate) {
		seen = append(seen, name+"="+leaf.Subject.CommonName)
	}})
	cert, err := certs.SelfSigned("mx.ours.test")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	entry := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...)
	ctx := context.Background()
	for _, name := range []string{"mx.ours.test", "mx.ours.test+token", "acme_account+key"} {
		if err := m.m.Cache.Put(ctx, name, entry); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(m.cfg.Dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", name, fi.Mode(), err)
		}
	}
	if len(seen) != 1 || seen[0] != "mx.ours.test=mx.ours.test" {
		t.Errorf("observed %v, want the certificate of mx.ours.test once", seen)
	}
	if fi, err := os.Stat(m.cfg.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v %v, want mode 0700", m.cfg.Dir, fi.Mode(), err)
	}
}

func TestRenewalDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: start, NotAfter: start.Add(90 * 24 * time.Hour)}
	for _, c := range []struct {
		before time.Duration
		want   time.Time
	}{
		{0, start.Add(60 * 24 * time.Hour)},                   // a third of 90 days
		{10 * 24 * time.Hour, start.Add(80 * 24 * time.Hour)}, // as set
		{60 * 24 * time.Hour, start.Add(60 * 24 * time.Hour)}, // at most 30 days
	} {
		if got := renewalDue(leaf, c.before); !got.Equal(c.want) {
			t.Errorf("renew_before %v: due %v, want %v", c.before, got, c.want)
		}
	}
}

// A closed Manager asks the CA nothing more.
func TestClosedAsksNothing(t *testing.T) {
	m := newTest(t, Config{})
	m.Close()
	err := m.obtain("mx.ours.test")
	if err == nil || !strings.Contains(err.Error(), errClosed.Error()) {
		t.Errorf("obtain after Close: %v, want %v", err, errClosed)
	}
}
