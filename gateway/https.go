package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/acmecert"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
)

// site is what the HTTPS listener serves, from one configuration: the
// MTA-STS policy at each domain's mta-sts name. A reload replaces it
// whole.
type site struct {
	policy string          // the policy file; "" when none is published
	hosts  map[string]bool // mta-sts.<domain> for every domain
}

func newSite(cfg *config.Config) *site {
	s := &site{hosts: map[string]bool{}}
	p, ok := cfg.MTASTSPolicy()
	if !ok {
		return s
	}
	s.policy = p.String()
	for _, h := range policyHosts(cfg) {
		s.hosts[h] = true
	}
	return s
}

// policyHosts are the names the policy is served at.
func policyHosts(cfg *config.Config) []string {
	var hosts []string
	for _, d := range cfg.Domains {
		hosts = append(hosts, "mta-sts."+d)
	}
	return hosts
}

// acmeNames are the names ACME gets certificates for: the hostname, for
// STARTTLS, and the policy's names when the HTTPS listener serves one.
func acmeNames(cfg *config.Config) []string {
	names := []string{cfg.Hostname}
	if _, ok := cfg.MTASTSPolicy(); ok && len(cfg.HTTPS.Listen) > 0 {
		names = append(names, policyHosts(cfg)...)
	}
	return names
}

// newACME makes the ACME manager of the process: unlike a generation's
// parts it lives as long as the gateway, since it holds the renewal
// timers; a reload changes only its names ([tls] is restart-only).
func (g *Gateway) newACME(cfg *config.Config) (*acmecert.Manager, error) {
	t := cfg.TLS
	var roots *x509.CertPool
	if t.ACMECAFile != "" {
		pem, err := os.ReadFile(cfg.Path(t.ACMECAFile))
		if err != nil {
			return nil, cfg.ErrorAt("tls.acme_ca_file", "tls.acme_ca_file: %v", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, cfg.ErrorAt("tls.acme_ca_file", "tls.acme_ca_file: %s holds no PEM certificate", cfg.Path(t.ACMECAFile))
		}
	}
	if !g.strict {
		// Now rather than after the CA has issued a certificate that
		// could not be stored.
		if err := os.MkdirAll(cfg.ACMEDir(), 0o700); err != nil {
			return nil, cfg.ErrorAt("tls.acme", "tls.acme: the certificates' directory (data_dir): %v", err)
		}
	}
	m, err := acmecert.New(acmecert.Config{
		Directory:   t.ACMEDirectory,
		Email:       t.ACMEEmail,
		Roots:       roots,
		RenewBefore: t.ACMERenewBefore.D(),
		Dir:         cfg.ACMEDir(),
		Hostname:    cfg.Hostname,
		Logger:      g.log,
		Observe:     g.metrics.certificate,
		Failed: func(name string, _ error) {
			g.metrics.acmeFailures.WithLabelValues(name).Inc()
		},
	}, acmeNames(cfg))
	if err != nil {
		return nil, cfg.ErrorAt("tls.acme", "tls.acme: %v", err)
	}
	return m, nil
}

// certificate records when the certificate for name expires.
func (m *gatewayMetrics) certificate(name string, leaf *x509.Certificate) {
	m.certExpiry.WithLabelValues(name).Set(float64(leaf.NotAfter.Unix()))
}

// applied makes what serves outside the generations follow cfg, once its
// generation serves: the HTTPS site, ACME's names, the certificate's
// expiry for a certificate from files.
func (g *Gateway) applied(cfg *config.Config, tlsConfig *tls.Config) {
	g.site.Store(newSite(cfg))
	if g.acme != nil {
		g.acme.SetNames(acmeNames(cfg))
		return
	}
	if cfg.SMTP.TLSCert != "" && tlsConfig != nil && len(tlsConfig.Certificates) > 0 {
		if leaf := tlsConfig.Certificates[0].Leaf; leaf != nil {
			g.metrics.certificate(cfg.Hostname, leaf)
		}
	}
}

// httpsTLS is the HTTPS listener's TLS configuration: ACME's certificates
// and challenges, or else the STARTTLS certificate of the generation in
// use (smtp.tls_cert, which must then cover the mta-sts names).
func (g *Gateway) httpsTLS() *tls.Config {
	if g.acme != nil {
		return &tls.Config{
			GetCertificate: g.acme.HTTPSCertificate,
			NextProtos:     []string{"http/1.1", acmecert.ALPNProto},
		}
	}
	return &tls.Config{NextProtos: []string{"http/1.1"}, GetConfigForClient: g.generationTLS}
}

// generationTLS is the STARTTLS configuration of the generation in use,
// so that each handshake gets the certificate as last reloaded.
func (g *Gateway) generationTLS(*tls.ClientHelloInfo) (*tls.Config, error) {
	gen := g.gens.Acquire()
	if gen == nil {
		return nil, errClosed
	}
	defer gen.Release()
	if gen.TLS == nil {
		return nil, errors.New("no certificate configured")
	}
	return gen.TLS, nil
}

// httpsServer serves the MTA-STS policy at
// https://mta-sts.<domain>/.well-known/mta-sts.txt for every domain
// (RFC 8461 §3.3), and nothing else.
func (g *Gateway) httpsServer() *http.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := g.site.Load()
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.TrimSuffix(host, "."))
		if s.policy == "" || !s.hosts[host] || r.URL.Path != mtasts.Path {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", fmt.Sprint(len(s.policy)))
		w.Write([]byte(s.policy))
	})
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		// Handshakes that fail (scanners, names we do not serve) are
		// routine on port 443: debug, not errors.
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
}
