package sdktest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// fetcher gets the URL its config names at mail and reports the answer
// (or the error) as a header; it checks the URL when configured.
type fetcher struct {
	URL string `toml:"url"`
}

func (f *fetcher) Configure(c *sdk.Config) error {
	if err := c.Decode(f); err != nil {
		return err
	}
	c.Permit(abi.MayAddHeaders)
	return sdk.CheckURL(f.URL)
}

func (f *fetcher) Mail(*sdk.Request) sdk.Verdict {
	resp, err := sdk.HTTP(&sdk.HTTPRequest{Method: "POST", URL: f.URL, Body: []byte("ping")})
	if err != nil {
		return sdk.Continue().AddHeader("X-Got", errText(err))
	}
	return sdk.Continue().AddHeader("X-Got", string(resp.Body))
}

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/large":
			w.Write([]byte(strings.Repeat("x", 100)))
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		case "/moved":
			http.Redirect(w, r, "http://192.0.2.1/", http.StatusFound)
		default:
			w.Write([]byte("pong"))
		}
	}))
	defer srv.Close()
	allowed := strings.TrimPrefix(srv.URL, "http://")
	opts := []Option{HTTPHosts(allowed), HTTPMaxResponse(50), HTTPTimeout(100 * time.Millisecond)}

	if _, err := Configure(&fetcher{}, `url = "http://192.0.2.1:80/"`, opts...); err == nil || !strings.Contains(err.Error(), sdk.ErrNotAllowed.Error()) {
		t.Errorf("a URL outside http_hosts configures: %v", err)
	}
	if _, err := Configure(&fetcher{}, `url = "`+srv.URL+`/"`, append(opts, Deny(abi.CapHTTP))...); err == nil || !strings.Contains(err.Error(), sdk.ErrDenied.Error()) {
		t.Errorf("without the capability: %v", err)
	}
	for path, want := range map[string]string{
		"/":      "pong",
		"/large": "sdk: http_request: " + sdk.ErrTooLarge.Error(),
		"/slow":  "sdk: http_request: " + sdk.ErrTimeout.Error(),
		"/moved": "", // a 302, not followed
	} {
		p := New(t, &fetcher{}, `url = "`+srv.URL+path+`"`, opts...)
		v := p.Handle(t, &sdk.Request{Stage: abi.StageMail})
		if len(v.AddHeaders) != 1 || v.AddHeaders[0].Value != want {
			t.Errorf("%s: %+v, want X-Got: %s", path, v.AddHeaders, want)
		}
	}
}
