package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"
)

// AddrResolver finds the policy host's addresses.
type AddrResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) // "ip6" or "ip4"
}

// GetterConfig configures a Getter. Zero values get the defaults noted.
type GetterConfig struct {
	Resolver    AddrResolver   // required
	RootCAs     *x509.CertPool // roots for the policy host's certificate; nil = the system's
	Port        int            // the policy host's HTTPS port, default 443 (tests use others)
	DisableIPv6 bool           // never connect to a policy host over IPv6
	Timeout     time.Duration  // for one Get, default 30s
	// Time, if set, is the time certificates are checked at (the
	// doctor's clock); nil = now.
	Time func() time.Time
}

// Getter gets policy files as senders do (RFC 8461 §3.3): over HTTPS with
// a certificate valid for mta-sts.<domain>, no redirects, a 200 reply of
// type text/plain of at most MaxPolicySize bytes. The relay's Fetcher and
// `sluice doctor` both use it, so that the doctor judges a policy host by
// exactly what senders require of it.
type Getter struct {
	cfg    GetterConfig
	client *http.Client
}

// NewGetter returns a Getter for c.
func NewGetter(c GetterConfig) *Getter {
	if c.Port == 0 {
		c.Port = defaultPort
	}
	if c.Timeout <= 0 {
		c.Timeout = defaultTimeout
	}
	g := &Getter{cfg: c}
	// The policy host is found with our resolver, like the MX hosts, and
	// no proxy is used: both would be ways around the DNS the operator
	// configured.
	g.client = &http.Client{
		Transport: &http.Transport{
			DialContext:            g.dial,
			TLSClientConfig:        &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12, Time: c.Time},
			DisableKeepAlives:      true, // a domain's policy is fetched rarely
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       c.Timeout,
	}
	return g
}

// Get returns the policy file of domain, unparsed, and the certificate
// it was served with.
func (g *Getter) Get(ctx context.Context, domain string) (string, *x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://mta-sts."+domain+Path, nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // callers name the URL themselves
		}
		return "", nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return "", nil, fmt.Errorf("content type %q is not text/plain", resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return "", nil, err
	}
	// Verified, so the connection is TLS and has a leaf.
	return string(body), resp.TLS.PeerCertificates[0], nil
}

// minDialShare is the least time one of the policy host's addresses gets
// to connect, when the time left allows it.
const minDialShare = 2 * time.Second

// dial connects to the policy host at addr ("host:443"), finding its
// addresses with the resolver, IPv6 first. Each address gets its share of
// the time left, so that one that swallows packets (an IPv6 route that
// goes nowhere is the common case) cannot use up the whole fetch.
func (g *Getter) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	networks := []string{"ip6", "ip4"}
	if g.cfg.DisableIPv6 {
		networks = networks[1:]
	}
	var ips []netip.Addr
	var errs []error
	for _, network := range networks {
		found, err := g.cfg.Resolver.LookupNetIP(ctx, network, host+".")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ips = append(ips, found...)
	}
	for i, ip := range ips {
		d := net.Dialer{Timeout: g.dialShare(ctx, len(ips)-i)}
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.Unmap().String(), strconv.Itoa(g.cfg.Port)))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%s: no addresses", host)
	}
	return nil, errors.Join(errs...)
}

// dialShare is how long the next of left addresses may take to connect:
// an equal share of the time ctx has left (of Timeout, if it has no
// deadline), but at least minDialShare where that much is left.
func (g *Getter) dialShare(ctx context.Context, left int) time.Duration {
	remaining := g.cfg.Timeout
	if deadline, ok := ctx.Deadline(); ok {
		remaining = time.Until(deadline)
	}
	return min(remaining, max(remaining/time.Duration(left), minDialShare))
}
