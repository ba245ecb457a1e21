package mtasts

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

const enforcePolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"

// policyServer is a real HTTPS server on loopback standing in for
// https://mta-sts.example.test; handle answers each request.
type policyServer struct {
	port     int
	requests atomic.Int32
	mu       sync.Mutex
	handle   func(w http.ResponseWriter)
	dns      *dnstest.Server // serves example.test
}

// fetchSetup starts a policy server with a certificate for certName from
// a test CA, DNS with the _mta-sts record txt ("" for none), and a
// Fetcher trusting the CA.
func fetchSetup(t *testing.T, certName, txt string, handle func(w http.ResponseWriter), adjust ...func(*Config)) (*Fetcher, *policyServer, *[]error) {
	t.Helper()
	ca, err := certs.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(time.Now().Add(time.Hour), certName)
	if err != nil {
		t.Fatal(err)
	}
	ps := &policyServer{handle: handle}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.requests.Add(1)
		if r.URL.Path != Path || r.Host != "mta-sts.example.test" {
			http.NotFound(w, r)
			return
		}
		ps.mu.Lock()
		h := ps.handle
		ps.mu.Unlock()
		h(w)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ps.port = srv.Listener.Addr().(*net.TCPAddr).Port
	zone := "$TTL 300\nmta-sts.example.test. IN A 127.0.0.1\n"
	if txt != "" {
		zone += "_mta-sts.example.test. IN TXT \"" + txt + "\"\n"
	}
	dns := dnstest.Start(t, zone)
	ps.dns = dns
	res, err := resolver.New(resolver.Config{Nameservers: []string{dns.Addr()}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var fetched []error
	c := Config{Resolver: res, RootCAs: ca.Pool(), Port: ps.port, Timeout: 10 * time.Second,
		Fetched: func(err error) { mu.Lock(); fetched = append(fetched, err); mu.Unlock() }}
	for _, f := range adjust {
		f(&c)
	}
	f, err := NewFetcher(c)
	if err != nil {
		t.Fatal(err)
	}
	return f, ps, &fetched
}

func serveText(body string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	}
}

func TestFetchesPolicy(t *testing.T) {
	f, _, fetched := fetchSetup(t, "mta-sts.example.test", "v=STSv1; id=20250101", serveText(enforcePolicy))
	p, ok := f.Policy(context.Background(), "Example.Test.")
	if !ok || p.Mode != Enforce || !p.Matches("mx.example.test") || p.MaxAge != 86400*time.Second {
		t.Fatalf("Policy = %+v, %v", p, ok)
	}
	if len(*fetched) != 1 || (*fetched)[0] != nil {
		t.Errorf("fetches reported: %v", *fetched)
	}
}

// Each way a policy host can fail RFC 8461 §3.3 leaves no policy.
func TestFetchRefusesBadPolicyHosts(t *testing.T) {
	for name, tc := range map[string]struct {
		certName string
		handle   func(http.ResponseWriter)
		want     string
	}{
		"certificate for another name": {"www.example.test", serveText(enforcePolicy), "certificate is valid for www.example.test"},
		"redirect": {"mta-sts.example.test", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://mta-sts.example.test/other")
			w.WriteHeader(http.StatusMovedPermanently)
		}, "HTTP status 301"},
		"not found": {"mta-sts.example.test", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound) }, "HTTP status 404"},
		"content type": {"mta-sts.example.test", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, enforcePolicy)
		}, `content type "text/html" is not text/plain`},
		"too large":    {"mta-sts.example.test", serveText(enforcePolicy + strings.Repeat("x: y\r\n", MaxPolicySize/6)), "larger than"},
		"not a policy": {"mta-sts.example.test", serveText("version: STSv1\r\nmode: enforce\r\nmax_age: 1\r\n"), "without any mx"},
	} {
		t.Run(name, func(t *testing.T) {
			f, _, fetched := fetchSetup(t, tc.certName, "v=STSv1; id=1", tc.handle)
			if p, ok := f.Policy(context.Background(), "example.test"); ok {
				t.Fatalf("Policy = %+v; want none", p)
			}
			if len(*fetched) != 1 || (*fetched)[0] == nil || !strings.Contains((*fetched)[0].Error(), tc.want) {
				t.Errorf("fetch errors = %v; want one containing %q", *fetched, tc.want)
			}
		})
	}
}

func TestNoRecordNoFetch(t *testing.T) {
	f, ps, _ := fetchSetup(t, "mta-sts.example.test", "v=spf1 -all", serveText(enforcePolicy))
	if _, ok := f.Policy(context.Background(), "example.test"); ok || ps.requests.Load() != 0 {
		t.Errorf("ok = %v after %d requests; want no policy and no fetch", ok, ps.requests.Load())
	}
}

// A domain whose policy cannot be fetched is not tried again for every
// message: only once Recheck has passed.
func TestFailedFetchIsNotRetriedAtOnce(t *testing.T) {
	f, ps, _ := fetchSetup(t, "mta-sts.example.test", "v=STSv1; id=1",
		func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	for range 3 {
		f.Policy(context.Background(), "example.test")
	}
	if n := ps.requests.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

func TestConcurrentCallersShareOneFetch(t *testing.T) {
	release := make(chan struct{})
	f, ps, _ := fetchSetup(t, "mta-sts.example.test", "v=STSv1; id=1", func(w http.ResponseWriter) {
		<-release
		serveText(enforcePolicy)(w)
	})
	var wg sync.WaitGroup
	var got atomic.Int32
	for range 8 {
		wg.Go(func() {
			if _, ok := f.Policy(context.Background(), "example.test"); ok {
				got.Add(1)
			}
		})
	}
	for ps.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got.Load() != 8 || ps.requests.Load() != 1 {
		t.Errorf("%d callers got the policy from %d fetches; want 8 from 1", got.Load(), ps.requests.Load())
	}
}

// A waiting caller whose context ends goes on without a policy; the fetch
// goes on for the others.
func TestCallerContextEndsWait(t *testing.T) {
	release := make(chan struct{})
	f, ps, _ := fetchSetup(t, "mta-sts.example.test", "v=STSv1; id=1", func(w http.ResponseWriter) {
		<-release
		serveText(enforcePolicy)(w)
	})
	go f.Policy(context.Background(), "example.test")
	for ps.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := f.Policy(ctx, "example.test"); ok {
		t.Error("policy returned to a caller whose context ended")
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := f.Policy(context.Background(), "example.test"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shared fetch never completed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The first caller for a domain, which starts the lookup, waits for it
// only as long as its own context lasts; the fetch goes on, and its
// policy is cached for the next caller.
func TestFirstCallerContextEndsWait(t *testing.T) {
	release := make(chan struct{})
	var notWaited atomic.Int32
	f, ps, fetched := fetchSetup(t, "mta-sts.example.test", "v=STSv1; id=1", func(w http.ResponseWriter) {
		<-release
		serveText(enforcePolicy)(w)
	}, func(c *Config) { c.NotWaited = func() { notWaited.Add(1) } })
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan bool)
	go func() {
		_, ok := f.Policy(ctx, "example.test")
		returned <- ok
	}()
	for ps.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	// The policy host has not answered (it waits for release): a
	// caller held by the fetch could not return here.
	select {
	case ok := <-returned:
		if ok {
			t.Error("policy returned to a caller whose context ended")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first caller waited for the fetch after its context ended")
	}
	if n := notWaited.Load(); n != 1 {
		t.Errorf("NotWaited told %d times, want 1", n)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p, ok := f.Policy(context.Background(), "example.test"); ok {
			if p.Mode != Enforce || ps.requests.Load() != 1 || len(*fetched) != 1 {
				t.Errorf("mode %q after %d requests, %d fetches; want enforce from the one fetch", p.Mode, ps.requests.Load(), len(*fetched))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fetch never completed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An expired policy is not used, even when it cannot be fetched again.
func TestExpiredPolicyIsDropped(t *testing.T) {
	var fail atomic.Bool
	f, _, _ := fetchSetup(t, "mta-sts.example.test", "v=STSv1; id=1", func(w http.ResponseWriter) {
		if fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		serveText(strings.Replace(enforcePolicy, "86400", "1", 1))(w)
	}, func(c *Config) { c.Recheck = time.Nanosecond })
	if _, ok := f.Policy(context.Background(), "example.test"); !ok {
		t.Fatal("no policy")
	}
	fail.Store(true)
	time.Sleep(1100 * time.Millisecond)
	if p, ok := f.Policy(context.Background(), "example.test"); ok {
		t.Errorf("expired policy %+v still used", p)
	}
}

// A policy that expires between looks at its TXT record (its max_age is
// shorter than Recheck) is fetched again for the next message, not left
// out until Recheck has passed.
func TestExpiredPolicyIsFetchedAgain(t *testing.T) {
	f, ps, _ := fetchSetup(t, "mta-sts.example.test", "v=STSv1; id=1",
		serveText(strings.Replace(enforcePolicy, "86400", "1", 1)))
	if _, ok := f.Policy(context.Background(), "example.test"); !ok {
		t.Fatal("no policy")
	}
	time.Sleep(1100 * time.Millisecond)
	if p, ok := f.Policy(context.Background(), "example.test"); !ok || p.Mode != Enforce {
		t.Errorf("Policy after it expired = %+v, %v; want it fetched again", p, ok)
	}
	if n := ps.requests.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

func TestNewFetcherNeedsResolver(t *testing.T) {
	if _, err := NewFetcher(Config{}); err == nil {
		t.Error("no error without a resolver")
	}
}

// Domains without a policy do not pile up in the cache; those with one
// stay.
func TestCacheForgetsDomainsWithoutPolicy(t *testing.T) {
	f, _, _ := fetchSetup(t, "mta-sts.example.test", "v=STSv1; id=1", serveText(enforcePolicy))
	if _, ok := f.Policy(context.Background(), "example.test"); !ok {
		t.Fatal("no policy")
	}
	for i := range 3 * minSweepAt {
		f.Policy(context.Background(), fmt.Sprintf("d%d.test", i))
	}
	if n := f.cache.size(); n > minSweepAt {
		t.Errorf("%d domains cached, want at most %d", n, minSweepAt)
	}
	if _, ok := f.Policy(context.Background(), "example.test"); !ok {
		t.Error("the domain with a policy was forgotten")
	}
}
