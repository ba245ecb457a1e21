package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
)

// httpsGet sends method for https://host/path to the HTTPS listener at
// addr, whatever host resolves to, verifying its certificate against
// roots (nil: not verified). It returns the status, content type and body.
func httpsGet(t *testing.T, addr, method, host, path string, roots *x509.CertPool) (int, string, string, error) {
	t.Helper()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{ServerName: host, RootCAs: roots, InsecureSkipVerify: roots == nil},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, "https://"+host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b), err
}

const mtastsSections = `
[https]
listen = ["127.0.0.1:0"]
[mta_sts]
mode = "testing"
mx = ["mx.ours.test", "*.backup.test"]
max_age = "86400s"
`

// The HTTPS listener serves the policy of [mta_sts] at each domain's
// mta-sts name, as text/plain, and nothing else; a reload changes it.
func TestMTASTSPolicyServed(t *testing.T) {
	e := startEnv(t, envOptions{domains: `["ours.test", "second.test"]`, sections: mtastsSections})
	addrs := e.gw.HTTPSAddrs()
	if len(addrs) != 1 {
		t.Fatalf("HTTPS listeners %v, want one", addrs)
	}
	addr := addrs[0]
	want := "version: STSv1\r\nmode: testing\r\nmx: mx.ours.test\r\nmx: *.backup.test\r\nmax_age: 86400\r\n"
	for _, host := range []string{"mta-sts.ours.test", "mta-sts.second.test", "MTA-STS.Ours.Test"} {
		code, ctype, body, err := httpsGet(t, addr, "GET", host, mtasts.Path, nil)
		if err != nil || code != 200 || ctype != "text/plain" || body != want {
			t.Errorf("GET https://%s%s: %d %q %q %v, want 200 text/plain %q", host, mtasts.Path, code, ctype, body, err, want)
			continue
		}
		if p, err := mtasts.Parse(body); err != nil || p.Mode != mtasts.Testing || !p.Matches("mx2.backup.test") {
			t.Errorf("the served policy does not parse back: %+v %v", p, err)
		}
	}
	if code, _, body, err := httpsGet(t, addr, "HEAD", "mta-sts.ours.test", mtasts.Path, nil); err != nil || code != 200 || body != "" {
		t.Errorf("HEAD: %d %q %v, want 200 and no body", code, body, err)
	}

	for _, c := range []struct{ method, host, path string }{
		{"GET", "mta-sts.other.test", mtasts.Path}, // not a domain of ours
		{"GET", "mx.ours.test", mtasts.Path},       // not the policy host
		{"GET", "ours.test", mtasts.Path},
		{"GET", "mta-sts.ours.test", "/"},
		{"GET", "mta-sts.ours.test", mtasts.Path + ".bak"},
		{"GET", "mta-sts.ours.test", "/.well-known/acme-challenge/x"},
	} {
		if code, _, body, err := httpsGet(t, addr, c.method, c.host, c.path, nil); err != nil || code != 404 || strings.Contains(body, "STSv1") {
			t.Errorf("%s https://%s%s: %d %q %v, want 404", c.method, c.host, c.path, code, body, err)
		}
	}
	if code, _, _, err := httpsGet(t, addr, "POST", "mta-sts.ours.test", mtasts.Path, nil); err != nil || code != 405 {
		t.Errorf("POST to the policy: %d %v, want 405", code, err)
	}

	// A reload publishes the new policy at once.
	enforce := strings.Replace(e.cfgText, `mode = "testing"`, `mode = "enforce"`, 1)
	if err := os.WriteFile(e.cfgPath, []byte(enforce), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = strings.Replace(want, "mode: testing", "mode: enforce", 1)
	if code, _, body, err := httpsGet(t, addr, "GET", "mta-sts.second.test", mtasts.Path, nil); err != nil || code != 200 || body != want {
		t.Errorf("after the reload: %d %q %v, want %q", code, body, err, want)
	}
	if strings.Contains(e.logs.String(), "settings changed that a reload does not apply") {
		t.Errorf("mta_sts was reported as not applied:\n%s", e.logs.String())
	}
}
