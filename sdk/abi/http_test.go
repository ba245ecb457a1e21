package abi

import (
	"reflect"
	"slices"
	"testing"
)

func TestHTTPRoundTrip(t *testing.T) {
	req := &HTTPRequest{Method: "POST", URL: "http://127.0.0.1:11333/checkv2",
		Header: []Header{{"Rcpt", "a@example.org"}, {"Rcpt", "b@example.org"}}, Body: []byte("Subject: x\r\n\r\nhi\r\n")}
	var gotReq HTTPRequest
	if err := DecodeHTTPRequest(AppendHTTPRequest(nil, req), &gotReq); err != nil || !reflect.DeepEqual(&gotReq, req) {
		t.Errorf("request: got %+v, %v; want %+v", gotReq, err, req)
	}
	resp := &HTTPResponse{Status: 200, Header: []Header{{"Content-Type", "application/json"}}, Body: []byte(`{"action":"reject"}`)}
	var gotResp HTTPResponse
	if err := DecodeHTTPResponse(AppendHTTPResponse(nil, resp), &gotResp); err != nil || !reflect.DeepEqual(&gotResp, resp) {
		t.Errorf("response: got %+v, %v; want %+v", gotResp, err, resp)
	}
	// A count longer than what follows, and a status past 16 bits.
	for _, b := range [][]byte{{3, 'G', 'E', 'T', 0, 9}, {0xff, 0xff, 0x7f}} {
		if err := DecodeHTTPRequest(b, &gotReq); err == nil && b[0] == 3 {
			t.Errorf("request %q decoded", b)
		}
		if err := DecodeHTTPResponse(b, &gotResp); err == nil && b[0] == 0xff {
			t.Errorf("response %q decoded", b)
		}
	}
}

// The host:port a URL goes to is written as http_hosts lists it; what
// could go elsewhere than it says is refused.
func TestHTTPTarget(t *testing.T) {
	for _, c := range []struct {
		url, hostPort string
		code          int32
	}{
		{"http://127.0.0.1:11333/checkv2", "127.0.0.1:11333", 0},
		{"http://Rspamd.Example.TEST/x", "rspamd.example.test:80", 0},
		{"https://api.example.test/v1?q=1", "api.example.test:443", 0},
		{"http://[::1]:8080/", "[::1]:8080", 0},
		{"https://[2001:DB8::1]/", "[2001:db8::1]:443", 0},
		{"ftp://files.example.test/", "", ErrNotAllowed},
		{"file:///etc/passwd", "", ErrInvalid},
		{"http:opaque", "", ErrInvalid},
		{"/checkv2", "", ErrInvalid},
		{"http://user:pw@127.0.0.1:11333/", "", ErrInvalid},
		{"http://%zz/", "", ErrInvalid},
	} {
		u, hostPort, code := HTTPTarget(c.url)
		if hostPort != c.hostPort || code != c.code || (code == 0) != (u != nil) {
			t.Errorf("%s: %q %d (URL %v), want %q %d", c.url, hostPort, code, u, c.hostPort, c.code)
		}
	}
	for m, want := range map[string]bool{"GET": true, "POST": true, "OPTIONS": true, "get": false, "CONNECT": false, "TRACE": false, "": false} {
		if HTTPMethod(m) != want {
			t.Errorf("HTTPMethod(%q) = %v", m, !want)
		}
	}
}

// A response's fields come out by name, each name's values in order, so
// that what a plugin reads does not depend on Go's map order.
func TestResponseHeader(t *testing.T) {
	got := ResponseHeader(map[string][]string{"X-B": {"1", "2"}, "Content-Type": {"text/plain"}, "X-A": {"3"}})
	want := []Header{{"Content-Type", "text/plain"}, {"X-A", "3"}, {"X-B", "1"}, {"X-B", "2"}}
	if !slices.Equal(got, want) {
		t.Errorf("ResponseHeader = %v, want %v", got, want)
	}
}
