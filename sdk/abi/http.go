package abi

import (
	"math"
	"net/url"
	"slices"
	"strings"
)

// HTTPRequest is what a guest asks FuncHTTPRequest to send.
type HTTPRequest struct {
	Method string // GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS
	// URL is absolute: http or https, a host and port that the plugin's
	// http_hosts allow (the port may be left to the scheme's default).
	URL    string
	Header []Header // in order; a name may repeat
	Body   []byte
}

// HTTPResponse is what FuncHTTPRequest answers. A response of any status
// is an answer, redirects included: the host follows none.
type HTTPResponse struct {
	Status uint16
	Header []Header // canonical names, sorted by name, one item per value
	Body   []byte
}

// HTTPMethod reports whether FuncHTTPRequest sends requests of method m.
func HTTPMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return true
	}
	return false
}

// HTTPTarget parses an HTTPRequest's URL and returns it with the host:port
// it goes to, as http_hosts lists it: the host in lower case, the port
// the scheme's when the URL leaves it out. A URL without a host, or with
// user information, is ErrInvalid; a scheme other than http and https is
// ErrNotAllowed. The host and sdk/sdktest both check a request with it,
// so that a plugin's native tests allow what the gateway allows.
func HTTPTarget(rawURL string) (*url.URL, string, int32) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return nil, "", ErrInvalid
	}
	port := u.Port()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "", ErrNotAllowed
	case port == "" && u.Scheme == "http":
		port = "80"
	case port == "":
		port = "443"
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		// As net.JoinHostPort writes it: the net package would make every
		// plugin larger.
		host = "[" + host + "]"
	}
	return u, host + ":" + port, 0
}

// ResponseHeader lists the fields of an HTTP response's header (an
// http.Header) as a response carries them: by name in sorted order, each
// name's values in the order received, so that what a plugin reads does not
// depend on map order.
func ResponseHeader(h map[string][]string) []Header {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []Header
	for _, name := range names {
		for _, v := range h[name] {
			out = append(out, Header{Name: name, Value: v})
		}
	}
	return out
}

// AppendHTTPRequest appends the encoding of m to b: method, URL, the
// header fields as a list of (name, value), the body.
func AppendHTTPRequest(b []byte, m *HTTPRequest) []byte {
	e := encoder{b}
	e.str(m.Method)
	e.str(m.URL)
	e.headers(m.Header)
	e.bytes(m.Body)
	return e.b
}

// DecodeHTTPRequest decodes b into m.
func DecodeHTTPRequest(b []byte, m *HTTPRequest) error {
	d := decoder{b: b}
	*m = HTTPRequest{Method: d.str(), URL: d.str(), Header: d.headers(), Body: d.bytes()}
	return d.err
}

// AppendHTTPResponse appends the encoding of m to b: status, the header
// fields as a list of (name, value), the body.
func AppendHTTPResponse(b []byte, m *HTTPResponse) []byte {
	e := encoder{b}
	e.uint(uint64(m.Status))
	e.headers(m.Header)
	e.bytes(m.Body)
	return e.b
}

// DecodeHTTPResponse decodes b into m.
func DecodeHTTPResponse(b []byte, m *HTTPResponse) error {
	d := decoder{b: b}
	*m = HTTPResponse{Status: uint16(d.uint32(math.MaxUint16)), Header: d.headers(), Body: d.bytes()}
	return d.err
}

func (e *encoder) headers(h []Header) {
	e.uint(uint64(len(h)))
	for _, f := range h {
		e.str(f.Name)
		e.str(f.Value)
	}
}

func (d *decoder) headers() []Header {
	n := d.count()
	if n == 0 {
		return nil
	}
	h := make([]Header, n)
	for i := range h {
		h[i] = Header{Name: d.str(), Value: d.str()}
	}
	return h
}
