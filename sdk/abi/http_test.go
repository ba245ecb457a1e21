package abi

import (
	"reflect"
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
