// Package acmecert gets and renews the gateway's certificates from an
// ACME CA (RFC 8555) with golang.org/x/crypto/acme/autocert, proving
// control of each name by TLS-ALPN-01 (RFC 8737) on the HTTPS listener,
// and hands them to the TLS handshakes of STARTTLS and of that listener.
//
// Issuance never waits in a handshake: Run gets each certificate in the
// background, retrying with back-off, and until the hostname's is there
// STARTTLS presents a self-signed stand-in. autocert renews each
// certificate before it expires and swaps it in; the next handshake
// presents the new one.
package acmecert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
)

// LetsEncrypt is the directory used when none is configured.
const LetsEncrypt = autocert.DefaultACMEDirectory

// Defaults of Config's timings.
const (
	// DefaultRetryMin is more than the minute for which autocert answers
	// a name whose issuance failed with that failure, without asking
	// the CA again.
	DefaultRetryMin = 2 * time.Minute
	DefaultRetryMax = time.Hour
	// DefaultCheckInterval matches autocert's retry of a failed renewal
	// (every 30 to 60 minutes), so that each overdue check stands for
	// about one failed attempt.
	DefaultCheckInterval = 30 * time.Minute
)

// Config says where to get certificates and where to keep them.
type Config struct {
	Directory string // the CA's directory URL; "" is LetsEncrypt
	Email     string // the account's contact; "" for none
	// Roots verify the directory's HTTPS; nil: the system's.
	Roots *x509.CertPool
	// RenewBefore renews a certificate this long before it expires; 0:
	// autocert's default, a third of its lifetime and at most 30 days.
	RenewBefore time.Duration
	// Dir keeps the account key and the certificates, in autocert's
	// DirCache layout: one file per name, its key then its chain, 0600.
	Dir string
	// Hostname is the name of the certificate STARTTLS presents.
	Hostname string
	Logger   *slog.Logger
	// Observe, if set, is called with each certificate that comes into
	// use: found on disk at start, obtained, or renewed.
	Observe func(name string, leaf *x509.Certificate)
	// Failed, if set, is called with each failed attempt to get a
	// certificate, and each check that finds a renewal overdue.
	Failed func(name string, err error)

	// Timings; 0 picks the defaults above.
	RetryMin, RetryMax, CheckInterval time.Duration
}

// Manager holds the certificates of the gateway's names.
type Manager struct {
	cfg     Config
	m       *autocert.Manager
	standIn *tls.Certificate

	closed atomic.Bool // no more requests to the CA

	mu    sync.Mutex
	names []string        // wanted, hostname first
	ready map[string]bool // obtained (or found on disk) at least once
	wake  chan struct{}   // SetNames tells Run
}

// New makes a Manager for names (the hostname among them); it gets
// nothing until Run.
func New(cfg Config, names []string) (*Manager, error) {
	if cfg.Directory == "" {
		cfg.Directory = LetsEncrypt
	}
	cfg.RetryMin = orDefault(cfg.RetryMin, DefaultRetryMin)
	cfg.RetryMax = orDefault(cfg.RetryMax, DefaultRetryMax)
	cfg.CheckInterval = orDefault(cfg.CheckInterval, DefaultCheckInterval)
	standIn, err := certs.SelfSigned(cfg.Hostname)
	if err != nil {
		return nil, err
	}
	mgr := &Manager{cfg: cfg, standIn: &standIn, ready: map[string]bool{}, wake: make(chan struct{}, 1)}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: cfg.Roots}
	mgr.m = &autocert.Manager{
		// The operator who sets acme = true accepts the CA's terms, as
		// with certbot --agree-tos.
		Prompt:      autocert.AcceptTOS,
		Cache:       observedCache{autocert.DirCache(cfg.Dir), mgr},
		HostPolicy:  mgr.hostPolicy,
		RenewBefore: cfg.RenewBefore,
		Email:       cfg.Email,
		Client: &acme.Client{
			DirectoryURL: cfg.Directory,
			HTTPClient:   &http.Client{Transport: closingTransport{transport, &mgr.closed}, Timeout: time.Minute},
			UserAgent:    "sluice",
		},
	}
	mgr.SetNames(names)
	return mgr, nil
}

// Close stops every request to the CA, those of autocert's renewal timers
// included, which it has no way to stop: a closed gateway neither gets nor
// stores certificates.
func (mgr *Manager) Close() { mgr.closed.Store(true) }

var errClosed = errors.New("acmecert: closed")

// closingTransport refuses requests once its Manager is closed.
type closingTransport struct {
	http.RoundTripper
	closed *atomic.Bool
}

func (t closingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.closed.Load() {
		return nil, errClosed
	}
	return t.RoundTripper.RoundTrip(req)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// SetNames changes the names wanted, as a reload may (MTA-STS published
// or not). A name no longer wanted is no longer served or obtained;
// autocert keeps renewing what it has, which costs a request a month.
func (mgr *Manager) SetNames(names []string) {
	mgr.mu.Lock()
	mgr.names = slices.Clone(names)
	mgr.mu.Unlock()
	select {
	case mgr.wake <- struct{}{}:
	default:
	}
}

func (mgr *Manager) wanted(name string) bool {
	mgr.mu.Lock()
	defer mgr.mu.Unlock()
	return slices.Contains(mgr.names, name)
}

// hostPolicy lets autocert ask the CA only for the names wanted, so that
// a client naming another one cannot spend the CA's rate limits.
func (mgr *Manager) hostPolicy(_ context.Context, host string) error {
	if mgr.wanted(host) {
		return nil
	}
	return fmt.Errorf("acmecert: %q is not one of the gateway's names", host)
}

func (mgr *Manager) isReady(name string) bool {
	mgr.mu.Lock()
	defer mgr.mu.Unlock()
	return mgr.ready[name] && slices.Contains(mgr.names, name)
}

// hello is a ClientHello for name that autocert answers with the ECDSA
// P-256 certificate: only that one is ever obtained, whatever a client
// offers, so that no handshake sets off an issuance.
func hello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:       name,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
}

// STARTTLSCertificate is the certificate STARTTLS presents, whatever name
// the client asks for (most sending servers send none): the hostname's,
// or the self-signed stand-in until that is obtained. Senders that do not
// verify, most of them, encrypt either way.
func (mgr *Manager) STARTTLSCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if !mgr.isReady(mgr.cfg.Hostname) {
		return mgr.standIn, nil
	}
	c, err := mgr.m.GetCertificate(hello(mgr.cfg.Hostname))
	if err != nil {
		mgr.cfg.Logger.Error("acme: the certificate cannot be read; STARTTLS presents the self-signed stand-in", "name", mgr.cfg.Hostname, "err", err)
		return mgr.standIn, nil
	}
	return c, nil
}

// HTTPSCertificate answers the handshakes of the HTTPS listener: the CA's
// TLS-ALPN-01 validations, and clients of the names obtained. Any other
// name gets no certificate, and the handshake fails.
func (mgr *Manager) HTTPSCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == acme.ALPNProto {
		return mgr.m.GetCertificate(h) // the challenge's certificate
	}
	name := strings.ToLower(strings.TrimSuffix(h.ServerName, "."))
	if !mgr.isReady(name) {
		return nil, fmt.Errorf("no certificate for %q", h.ServerName)
	}
	return mgr.m.GetCertificate(hello(name))
}

// ALPNProto is the protocol the HTTPS listener must offer for TLS-ALPN-01.
const ALPNProto = acme.ALPNProto

// Run gets every wanted name's certificate, retrying failures with
// back-off, and checks that renewals happen, until ctx is done.
func (mgr *Manager) Run(ctx context.Context) {
	type retry struct {
		wait time.Duration
		at   time.Time
	}
	retries := map[string]retry{}
	nextCheck := time.Now().Add(mgr.cfg.CheckInterval)
	for {
		mgr.mu.Lock()
		names := slices.Clone(mgr.names)
		mgr.mu.Unlock()
		wakeAt := nextCheck
		for _, name := range names {
			if mgr.isReady(name) {
				continue
			}
			r := retries[name]
			if time.Now().Before(r.at) {
				wakeAt = minTime(wakeAt, r.at)
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if err := mgr.obtain(name); err != nil {
				r.wait = min(max(2*r.wait, mgr.cfg.RetryMin), mgr.cfg.RetryMax)
				r.at = time.Now().Add(r.wait)
				retries[name] = r
				mgr.cfg.Logger.Error("acme: cannot get a certificate; retrying", "name", name, "in", r.wait.String(), "err", err)
				mgr.failed(name, err)
				wakeAt = minTime(wakeAt, r.at)
				continue
			}
			delete(retries, name)
		}
		if !time.Now().Before(nextCheck) {
			mgr.checkRenewals(names)
			nextCheck = time.Now().Add(mgr.cfg.CheckInterval)
			wakeAt = minTime(wakeAt, nextCheck)
		}
		t := time.NewTimer(time.Until(wakeAt))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-mgr.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// obtain gets name's certificate: from the directory if it is on disk and
// valid, else from the CA (autocert bounds that by 5 minutes).
func (mgr *Manager) obtain(name string) error {
	mgr.cfg.Logger.Info("acme: getting the certificate", "name", name, "directory", mgr.cfg.Directory)
	c, err := mgr.m.GetCertificate(hello(name))
	if err != nil {
		return err
	}
	mgr.mu.Lock()
	mgr.ready[name] = true
	mgr.mu.Unlock()
	mgr.observe(name, c.Leaf, "acme: certificate in use")
	return nil
}

// checkRenewals reports each certificate that autocert should have
// renewed by now and has not: its renewals fail, and it only retries, so
// only this says so.
func (mgr *Manager) checkRenewals(names []string) {
	for _, name := range names {
		if !mgr.isReady(name) {
			continue
		}
		c, err := mgr.m.GetCertificate(hello(name))
		if err != nil || c.Leaf == nil {
			continue
		}
		due := renewalDue(c.Leaf, mgr.cfg.RenewBefore)
		if time.Now().After(due.Add(time.Hour)) {
			err := fmt.Errorf("renewal overdue since %s; the certificate expires at %s",
				due.UTC().Format(time.RFC3339), c.Leaf.NotAfter.UTC().Format(time.RFC3339))
			mgr.cfg.Logger.Warn("acme: renewal overdue: the CA cannot be reached or refuses", "name", name, "err", err)
			mgr.failed(name, err)
		}
	}
}

// renewalDue is when autocert renews leaf at the latest (its jitter of up
// to an hour comes on top).
func renewalDue(leaf *x509.Certificate, before time.Duration) time.Time {
	threshold := min(leaf.NotAfter.Sub(leaf.NotBefore)/3, 30*24*time.Hour)
	if before > 0 {
		threshold = min(before, 30*24*time.Hour)
	}
	return leaf.NotAfter.Add(-threshold)
}

func (mgr *Manager) failed(name string, err error) {
	if mgr.cfg.Failed != nil {
		mgr.cfg.Failed(name, err)
	}
}

func (mgr *Manager) observe(name string, leaf *x509.Certificate, msg string) {
	if leaf == nil {
		return
	}
	mgr.cfg.Logger.Info(msg, "name", name, "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	if life := leaf.NotAfter.Sub(leaf.NotBefore); mgr.cfg.RenewBefore >= life {
		mgr.cfg.Logger.Warn("acme: acme_renew_before is not shorter than the certificate's lifetime: it is renewed again at once, every time",
			"name", name, "lifetime", life.String(), "renew_before", mgr.cfg.RenewBefore.String())
	}
	if mgr.cfg.Observe != nil {
		mgr.cfg.Observe(name, leaf)
	}
}

// observedCache is autocert's DirCache, telling the Manager of each
// certificate stored, obtained or renewed: autocert itself says nothing.
type observedCache struct {
	autocert.DirCache
	mgr *Manager
}

func (c observedCache) Put(ctx context.Context, name string, data []byte) error {
	if err := c.DirCache.Put(ctx, name, data); err != nil {
		c.mgr.cfg.Logger.Error("acme: cannot store", "name", name, "dir", string(c.DirCache), "err", err)
		return err
	}
	// Other entries: the account key, "name+token" (a challenge's), and
	// "name+rsa", which is never asked for.
	if strings.ContainsRune(name, '+') {
		return nil
	}
	if chain, err := certs.ParseChain(data); err == nil {
		c.mgr.observe(name, chain[0], "acme: certificate stored")
	}
	return nil
}
