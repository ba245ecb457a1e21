package plugin

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero/api"
)

// The http capability lets a plugin ask a service it depends on (rspamd,
// a reputation API) while the decision stays in the plugin. A plugin
// reaches only the host:port pairs its [[plugin]] entry lists: the URL is
// checked before anything is sent, and the dialer checks the address
// again, so neither a redirect, a proxy setting of the environment nor a
// crafted URL takes a request anywhere else.

// Defaults for a Spec's HTTP settings.
const (
	DefaultHTTPTimeout     = 5 * time.Second
	DefaultHTTPMaxResponse = 1 << 20
	// MaxHTTPMaxResponse bounds http_max_response: a response is copied
	// into the plugin's memory, which is 64 MiB by default.
	MaxHTTPMaxResponse = 16 << 20
	// httpRequests is how many requests one call of a plugin may send.
	httpRequests = 4
)

// httpClient sends one plugin's requests.
type httpClient struct {
	allowed map[string]bool // host:port, as HTTPHost writes it
	timeout time.Duration
	max     int64
	client  *http.Client
}

// HTTPHost checks a host:port of http_hosts and writes it as the host
// compares it: the host in lower case, an IPv6 address in brackets.
func HTTPHost(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: the port must be a number from 1 to 65535", s)
	}
	if host == "" || strings.ContainsAny(host, "/@?#%[] ") {
		return "", fmt.Errorf("%q: not a host name or IP address", s)
	}
	return net.JoinHostPort(strings.ToLower(host), port), nil
}

// newHTTPClient returns the client of a plugin granted http.
func newHTTPClient(s Spec) (*httpClient, error) {
	c := &httpClient{allowed: map[string]bool{}, timeout: s.HTTPTimeout, max: s.HTTPMaxResponse}
	if c.timeout <= 0 {
		c.timeout = DefaultHTTPTimeout
	}
	if c.max <= 0 {
		c.max = DefaultHTTPMaxResponse
	}
	if c.max > MaxHTTPMaxResponse {
		return nil, fmt.Errorf("http_max_response of %d bytes is over the limit of %d", c.max, MaxHTTPMaxResponse)
	}
	for _, h := range s.HTTPHosts {
		hp, err := HTTPHost(h)
		if err != nil {
			return nil, fmt.Errorf("http_hosts: %w", err)
		}
		c.allowed[hp] = true
	}
	dialer := &net.Dialer{Timeout: c.timeout, KeepAlive: 30 * time.Second}
	c.client = &http.Client{
		Transport: &http.Transport{
			Proxy: nil, // never the environment's: the request goes where the operator allowed
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if !c.allowed[strings.ToLower(addr)] {
					return nil, errNotAllowed
				}
				return dialer.DialContext(ctx, network, addr)
			},
			TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		},
		// A redirect is the plugin's to follow, with a request the host
		// checks like any other.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

var errNotAllowed = errors.New("not in http_hosts")

// close drops the idle connections of a plugin being closed.
func (c *httpClient) close() {
	if c != nil {
		c.client.CloseIdleConnections()
	}
}

// httpRequest is (req_ptr, req_len, buf_ptr, buf_cap) → length of the
// encoded HTTPResponse. Asking again with the same request, after a
// buffer that was too small, is answered from that response without
// sending the request again.
func (h *hostFuncs) httpRequest(ctx context.Context, mod api.Module, stack []uint64) {
	raw, ok := guestBytes(mod, stack[0], stack[1])
	if !ok {
		ret(stack, abi.ErrMemory)
		return
	}
	var m abi.HTTPRequest
	if err := abi.DecodeHTTPRequest(raw, &m); err != nil {
		ret(stack, abi.ErrInvalid)
		return
	}
	u, code := h.http.check(&m)
	if code < 0 {
		if code == abi.ErrNotAllowed {
			h.logger.Warn("http request refused: its host and port are not in the plugin's http_hosts", "url", m.URL)
		}
		ret(stack, code)
		return
	}
	// While configuring, a plugin may check its URL settings: the answer
	// is ErrStage for an allowed URL, and nothing is sent.
	c := callOf(ctx)
	if c == nil {
		ret(stack, abi.ErrStage)
		return
	}
	if c.lastHTTP.answer != nil && bytes.Equal(c.lastHTTP.request, raw) {
		ret(stack, answer(mod, stack[2], stack[3], c.lastHTTP.answer))
		return
	}
	if c.httpRequests <= 0 || !time.Now().Before(c.deadline) {
		ret(stack, abi.ErrBudget)
		return
	}
	c.httpRequests--
	resp, code := h.http.send(ctx, c.deadline, u, &m, h.logger)
	if code < 0 {
		ret(stack, code)
		return
	}
	c.lastHTTP.request = bytes.Clone(raw)
	c.lastHTTP.answer = abi.AppendHTTPResponse(nil, resp)
	ret(stack, answer(mod, stack[2], stack[3], c.lastHTTP.answer))
}

// check refuses a request that may not be sent: a URL outside http_hosts,
// or a method or header field that is not acceptable.
func (c *httpClient) check(m *abi.HTTPRequest) (*url.URL, int32) {
	u, hostPort, code := abi.HTTPTarget(m.URL)
	if code < 0 {
		return nil, code
	}
	if !c.allowed[hostPort] {
		return nil, abi.ErrNotAllowed
	}
	if !abi.HTTPMethod(m.Method) {
		return nil, abi.ErrInvalid
	}
	for _, f := range m.Header {
		if !httpguts.ValidHeaderFieldName(f.Name) || !httpguts.ValidHeaderFieldValue(f.Value) {
			return nil, abi.ErrInvalid
		}
	}
	return u, 0
}

// send sends the request, within the client's timeout and the call's
// deadline, and reads the response up to the size limit.
func (c *httpClient) send(ctx context.Context, deadline time.Time, u *url.URL, m *abi.HTTPRequest, log *slog.Logger) (*abi.HTTPResponse, int32) {
	if end := time.Now().Add(c.timeout); end.Before(deadline) {
		deadline = end
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, m.Method, u.String(), bytes.NewReader(m.Body))
	if err != nil {
		return nil, abi.ErrInvalid
	}
	for _, f := range m.Header {
		if strings.EqualFold(f.Name, "Host") {
			continue // the URL says which host
		}
		req.Header.Add(f.Name, f.Value)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, httpFailure(ctx, err, u, log)
	}
	defer resp.Body.Close()
	if resp.ContentLength > c.max {
		log.Warn("http response refused: larger than http_max_response", "url", u.Redacted(), "length", resp.ContentLength, "max", c.max)
		return nil, abi.ErrTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.max+1))
	if err != nil {
		return nil, httpFailure(ctx, err, u, log)
	}
	if int64(len(body)) > c.max {
		log.Warn("http response refused: larger than http_max_response", "url", u.Redacted(), "max", c.max)
		return nil, abi.ErrTooLarge
	}
	return &abi.HTTPResponse{Status: uint16(resp.StatusCode), Header: abi.ResponseHeader(resp.Header), Body: body}, 0
}

// httpFailure logs why a request got no response and returns its code.
func httpFailure(ctx context.Context, err error, u *url.URL, log *slog.Logger) int32 {
	if errors.Is(err, errNotAllowed) { // not reached: check refused it first
		return abi.ErrNotAllowed
	}
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		log.Warn("http request timed out", "url", u.Redacted(), "error", err)
		return abi.ErrTimeout
	}
	log.Warn("http request failed", "url", u.Redacted(), "error", err)
	return abi.ErrTemporary
}
