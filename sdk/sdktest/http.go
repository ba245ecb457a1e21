package sdktest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// HTTPHosts allows the plugin's HTTP requests to these host:port pairs,
// as http_hosts in its [[plugin]] entry does; requests elsewhere answer
// sdk.ErrNotAllowed. Requests are sent for real, so a test points the
// plugin at a server it started (httptest, or the service itself).
func HTTPHosts(hosts ...string) Option {
	return func(h *host) {
		for _, hp := range hosts {
			h.httpHosts[strings.ToLower(hp)] = true
		}
	}
}

// HTTPTimeout sets http_timeout (default 5s, the gateway's).
func HTTPTimeout(d time.Duration) Option { return func(h *host) { h.httpTimeout = d } }

// HTTPMaxResponse sets http_max_response in bytes (default 1 MiB, the
// gateway's).
func HTTPMaxResponse(n int64) Option { return func(h *host) { h.httpMax = n } }

// maxHTTPRequests is how many HTTP requests one call may send.
const maxHTTPRequests = 4

// HTTPRequest sends the request with the gateway's rules: only to the
// allowed hosts, no redirects followed, nothing sent while configuring,
// the timeout and the size limit.
func (h *host) HTTPRequest(req []byte, buf []byte) int32 {
	if h.denied.Has(abi.CapHTTP) {
		return abi.ErrDenied
	}
	var m abi.HTTPRequest
	if abi.DecodeHTTPRequest(req, &m) != nil || !abi.HTTPMethod(m.Method) {
		return abi.ErrInvalid
	}
	u, hostPort, code := abi.HTTPTarget(m.URL)
	if code < 0 {
		return code
	}
	if !h.httpHosts[hostPort] {
		return abi.ErrNotAllowed
	}
	if h.stage == 0 {
		return abi.ErrStage
	}
	if h.lastHTTP.answer != nil && bytes.Equal(h.lastHTTP.request, req) {
		return answer(buf, h.lastHTTP.answer)
	}
	if h.httpSent >= maxHTTPRequests {
		return abi.ErrBudget
	}
	h.httpSent++
	resp, code := h.send(u, &m)
	if code < 0 {
		return code
	}
	h.lastHTTP.request, h.lastHTTP.answer = bytes.Clone(req), abi.AppendHTTPResponse(nil, resp)
	return answer(buf, h.lastHTTP.answer)
}

func (h *host) send(u *url.URL, m *abi.HTTPRequest) (*abi.HTTPResponse, int32) {
	ctx, cancel := context.WithTimeout(context.Background(), h.httpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, m.Method, u.String(), bytes.NewReader(m.Body))
	if err != nil {
		return nil, abi.ErrInvalid
	}
	for _, f := range m.Header {
		req.Header.Add(f.Name, f.Value)
	}
	client := &http.Client{
		Transport:     &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return nil, failure(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.httpMax+1))
	if err != nil {
		return nil, failure(ctx, err)
	}
	if int64(len(body)) > h.httpMax {
		return nil, abi.ErrTooLarge
	}
	return &abi.HTTPResponse{Status: uint16(resp.StatusCode), Header: abi.ResponseHeader(resp.Header), Body: body}, 0
}

func failure(ctx context.Context, err error) int32 {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return abi.ErrTimeout
	}
	return abi.ErrTemporary
}
