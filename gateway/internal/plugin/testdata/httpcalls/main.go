// Command httpcalls is a test plugin that sends the HTTP requests its
// request's HELO string lists and reports each result as an added header
// field "X-Result: ...". Commands are separated by ";":
//
//	get URL          sdk.HTTP GET: "STATUS BODY", or "err=" and the error
//	post URL BODY    sdk.HTTP POST with a header X-Echo: BODY
//	raw URL CAP      raw http_request (GET) with a buffer of CAP bytes: "n=RESULT"
//
// Its config's check = "URL" is checked with sdk.CheckURL when it is
// configured.
package main

import (
	"strconv"
	"strings"
	"unsafe"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

//go:wasmimport sluice http_request
func httpRequest(req unsafe.Pointer, reqLen uint32, buf unsafe.Pointer, bufCap uint32) int32

type plugin struct {
	Check string `toml:"check"`
}

func (p *plugin) Configure(c *sdk.Config) error {
	if err := c.Decode(p); err != nil {
		return err
	}
	c.Permit(abi.MayAddHeaders)
	if p.Check != "" {
		if err := sdk.CheckURL(p.Check); err != nil {
			return &sdk.SettingError{Key: "check", Err: err}
		}
	}
	return nil
}

func (p *plugin) run(req *sdk.Request) sdk.Verdict {
	v := sdk.Continue()
	for _, cmd := range strings.Split(req.Helo, ";") {
		if f := strings.Fields(cmd); len(f) > 0 {
			v = v.AddHeader("X-Result", do(f))
		}
	}
	return v
}

func (p *plugin) Connect(r *sdk.Request) sdk.Verdict { return p.run(r) }
func (p *plugin) Data(r *sdk.Request) sdk.Verdict    { return p.run(r) }

func do(f []string) string {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch f[0] {
	case "get", "post":
		req := &sdk.HTTPRequest{Method: strings.ToUpper(f[0]), URL: arg(1)}
		if f[0] == "post" {
			req.Header = []sdk.Field{{Name: "X-Echo", Value: arg(2)}}
			req.Body = []byte(arg(2))
		}
		resp, err := sdk.HTTP(req)
		if err != nil {
			return "err=" + err.Error()
		}
		return strconv.Itoa(int(resp.Status)) + " " + string(resp.Body)
	case "raw":
		enc := abi.AppendHTTPRequest(nil, &abi.HTTPRequest{Method: "GET", URL: arg(1)})
		n, _ := strconv.Atoi(arg(2))
		buf := make([]byte, n)
		return "n=" + strconv.Itoa(int(httpRequest(unsafe.Pointer(unsafe.SliceData(enc)), uint32(len(enc)),
			unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))))
	}
	return "unknown command " + f[0]
}

func init() { sdk.Register(&plugin{}) }

func main() {}
