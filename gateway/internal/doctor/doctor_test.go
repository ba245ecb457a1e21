package doctor

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dnsrecords"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
)

// now is the time the checks run at, so that certificate lifetimes are
// exact (to the second, as certificates keep them).
var now = time.Now().Truncate(time.Second)

// on is the day and time d after now, as the doctor writes a
// certificate's expiry.
func on(d time.Duration) string { return now.Add(d).UTC().Format("2006-01-02 15:04 UTC") }

// The test's keys, made once: RSA keys take a while.
var (
	keysOnce            sync.Once
	rsaKey, edKey, rsa2 crypto.Signer
)

func keys(t *testing.T) {
	keysOnce.Do(func() {
		rsaKey, _ = dkim.GenerateKey("rsa", 0)
		edKey, _ = dkim.GenerateKey("ed25519", 0)
		rsa2, _ = dkim.GenerateKey("rsa", 0)
	})
}

// The gateway of the tests: one domain, two outbound addresses (one of each
// family) saying EHLO as the hostname, two DKIM keys, MTA-STS enforced,
// and a certificate from a test CA.
const gatewayTOML = `hostname = "mx.example.test"
domains = ["example.test"]
[smtp]
tls_cert = "cert.pem"
tls_key = "key.pem"
[relay]
[[relay.source]]
address = "127.0.0.1"
[[relay.source]]
address = "::1"
[srs]
secrets = ["0123456789abcdef0123"]
[dkim]
[[dkim.key]]
selector = "r1"
file = "r1.pem"
[[dkim.key]]
selector = "e1"
file = "e1.pem"
` + httpsTOML + `[mta_sts]
mode = "enforce"
`

// httpsTOML is the gateway's HTTPS listener, which serves the policy.
const httpsTOML = `[https]
listen = ["127.0.0.1:443"]
`

var (
	caOnce sync.Once
	ca     *certs.CA
)

// testCA signs the certificates of the tests.
func testCA(t *testing.T) *certs.CA {
	caOnce.Do(func() {
		var err error
		if ca, err = certs.NewCA("Doctor Test CA"); err != nil {
			panic(err)
		}
	})
	return ca
}

// certPEM makes a certificate for names valid until notAfter, issued by
// the test CA, or self-signed (for names[0]) if selfSigned; in PEM, the
// chain and the key.
func certPEM(t *testing.T, names []string, notAfter time.Time, selfSigned bool) (chain, key []byte) {
	t.Helper()
	var cert tls.Certificate
	var err error
	if selfSigned {
		cert, err = certs.SelfSigned(names[0])
	} else {
		cert, err = testCA(t).Issue(notAfter, names...)
	}
	if err != nil {
		t.Fatal(err)
	}
	if chain, key, err = certs.PEM(cert); err != nil {
		t.Fatal(err)
	}
	return chain, key
}

// fixture is a configuration in a directory of its own, with its keys and
// certificate, and the plan `sluice dns` makes of it.
type fixture struct {
	dir  string
	cfg  *config.Config
	plan dnsrecords.Plan
}

// certSpec says which certificate the fixture gets.
type certSpec struct {
	names      []string
	validFor   time.Duration
	selfSigned bool
}

var goodCert = certSpec{names: []string{"mx.example.test"}, validFor: 60 * 24 * time.Hour}

func newFixture(t *testing.T, src string, cs certSpec) *fixture {
	t.Helper()
	keys(t)
	dir := t.TempDir()
	for name, k := range map[string]crypto.Signer{"r1.pem": rsaKey, "e1.pem": edKey} {
		p, _ := dkim.MarshalKey(k)
		os.WriteFile(filepath.Join(dir, name), p, 0o600)
	}
	certs, key := certPEM(t, cs.names, now.Add(cs.validFor), cs.selfSigned)
	os.WriteFile(filepath.Join(dir, "cert.pem"), certs, 0o644)
	os.WriteFile(filepath.Join(dir, "key.pem"), key, 0o600)
	path := filepath.Join(dir, "gateway.toml")
	os.WriteFile(path, []byte(src), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := dnsrecords.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, cfg: cfg, plan: plan}
}

// zone is what `sluice dns` prints: publishing it is the good zone.
func (f *fixture) zone() string {
	var b bytes.Buffer
	f.plan.WriteZone(&b)
	return b.String()
}

// run serves zone, and the configuration's MTA-STS policy as the gateway
// would, and runs the doctor against them.
func (f *fixture) run(t *testing.T, zone string, setup func(*dnstest.Server)) []Finding {
	t.Helper()
	port := 0
	if p, ok := f.cfg.MTASTSPolicy(); ok {
		port = policyServer(t, []string{"mta-sts.example.test"}, p.String())
	}
	return f.runWith(t, zone, setup, port)
}

// runWith runs the doctor against zone, fetching the MTA-STS policy from
// httpsPort.
func (f *fixture) runWith(t *testing.T, zone string, setup func(*dnstest.Server), httpsPort int) []Finding {
	t.Helper()
	srv := dnstest.Start(t, zone)
	if setup != nil {
		setup(srv)
	}
	r, err := resolver.New(resolver.Config{Nameservers: []string{srv.Addr()}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return Run(context.Background(), Options{Config: f.cfg, Plan: f.plan, Resolver: r, Now: now, Roots: testCA(t).Pool(), HTTPSPort: httpsPort})
}

// policyServer serves body at the MTA-STS policy's path over HTTPS on
// 127.0.0.1, with a certificate of the test CA for names, and returns its
// port.
func policyServer(t *testing.T, names []string, body string) int {
	t.Helper()
	return policyServerUntil(t, names, body, now.Add(60*24*time.Hour))
}

// policyServerUntil is policyServer with a certificate valid until notAfter.
func policyServerUntil(t *testing.T, names []string, body string, notAfter time.Time) int {
	t.Helper()
	certs, key := certPEM(t, names, notAfter, false)
	return policyServerWith(t, certs, key, body)
}

// policyServerWith is policyServer with the certificate chain and key
// given, in PEM. A body given as "html:" and the policy is the policy
// served as text/html, which senders refuse.
func policyServerWith(t *testing.T, certs, key []byte, body string) int {
	t.Helper()
	pair, err := tls.X509KeyPair(certs, key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != mtasts.Path {
			http.NotFound(w, r)
			return
		}
		if text, html := strings.CutPrefix(body, "html:"); html {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, text)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes the doctor refuses
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

func report(findings []Finding) string {
	var b bytes.Buffer
	Write(&b, findings)
	return b.String()
}

// Publishing what `sluice dns` prints makes every check pass.
func TestDoctorGoodZone(t *testing.T) {
	f := newFixture(t, gatewayTOML, goodCert)
	findings := f.run(t, f.zone(), nil)
	for _, fd := range findings {
		if fd.Status != OK {
			t.Errorf("not ok: %+v", fd)
		}
	}
	if Failed(findings) {
		t.Error("Failed() with every check ok")
	}
	// Every kind of check ran.
	for _, check := range []string{"MX", "SPF", "DKIM", "DMARC", "MTA-STS", "TLS-RPT", "address", "FCrDNS", "certificate"} {
		if !strings.Contains(report(findings), " "+check+" ") {
			t.Errorf("no %s finding in\n%s", check, report(findings))
		}
	}
	t.Log(report(findings))
}

// edit changes a zone: the lines matching remove (a regular expression)
// go, the lines of add come in.
func edit(remove, add string) func(string) string {
	return func(zone string) string {
		var out []string
		re := regexp.MustCompile(remove)
		for _, line := range strings.Split(zone, "\n") {
			if remove == "" || !re.MatchString(line) {
				out = append(out, line)
			}
		}
		return strings.Join(out, "\n") + "\n" + add + "\n"
	}
}

// dkimRecord is the key record of k at r1's name.
func dkimRecord(t *testing.T, k crypto.Signer) string {
	r, err := dnsrecords.DKIM("r1", "example.test", k)
	if err != nil {
		t.Fatal(err)
	}
	return r.Name + " 3600 IN TXT " + r.Value
}

// twoMX makes mx2.example.test the second MX host.
const twoMX = "[records]\nmx = [\"mx.example.test\", \"mx2.example.test\"]\n"

// Each breakage is reported with its status, what is wrong, and a fix.
func TestDoctorBrokenZones(t *testing.T) {
	keys(t)
	spfRecord := `^example\.test\. 3600 IN TXT "v=spf1`
	var tooManyLookups strings.Builder
	tooManyLookups.WriteString(`example.test. 3600 IN TXT "v=spf1`)
	for i := range 11 {
		tooManyLookups.WriteString(" a:a" + string(rune('a'+i)) + ".example.test")
	}
	tooManyLookups.WriteString(` ip4:127.0.0.1 ip6:::1 ~all"`)
	for i := range 11 {
		tooManyLookups.WriteString("\na" + string(rune('a'+i)) + ".example.test. 3600 IN A 192.0.2.1")
	}
	// The same lookups after our addresses: ours pass, everyone else's
	// evaluation meets the limit.
	lookupsAfterOurs := strings.Replace(tooManyLookups.String(), ` ip4:127.0.0.1 ip6:::1 ~all"`, ` ~all"`, 1)
	lookupsAfterOurs = strings.Replace(lookupsAfterOurs, `"v=spf1`, `"v=spf1 ip4:127.0.0.1 ip6:::1`, 1)
	lookupsAfterOurs = strings.ReplaceAll(lookupsAfterOurs, "IN A 192.0.2.1", "IN A 198.51.100.1")
	cases := []struct {
		name    string
		toml    string // added to the configuration
		cert    *certSpec
		zone    func(string) string
		setup   func(*dnstest.Server)
		status  Status
		check   string
		subject string // the finding's Name
		message string // in its message
		fix     string // in its fix; "" for none
	}{
		{name: "no MX", zone: edit(`IN MX`, ""),
			status: Error, check: "MX", subject: "example.test", message: "no MX record", fix: "example.test. 3600 IN MX 10 mx.example.test."},
		{name: "MX elsewhere", zone: edit(`IN MX`, "example.test. 3600 IN MX 10 mail.provider.example."),
			status: Error, check: "MX", subject: "example.test", message: "MX points elsewhere (mail.provider.example)", fix: "remove the MX records of mail.provider.example"},
		{name: "MX also elsewhere", zone: edit("", "example.test. 3600 IN MX 20 backup.provider.example."),
			status: Warn, check: "MX", subject: "example.test", message: "also points at backup.provider.example", fix: "remove the MX records of backup.provider.example"},
		{name: "null MX", zone: edit(`IN MX`, "example.test. 3600 IN MX 0 ."),
			status: Error, check: "MX", subject: "example.test", message: "null MX", fix: "IN MX 10 mx.example.test."},
		{name: "MX lookup fails", setup: func(s *dnstest.Server) { s.Fail("example.test.", dns.RcodeServerFailure) },
			status: Error, check: "MX", subject: "example.test", message: "the MX lookup failed"},
		{name: "MX host without address", zone: edit(`^mx\.example\.test\. 3600 IN A`, ""),
			status: Error, check: "MX", subject: "mx.example.test", message: "no A or AAAA record: senders cannot deliver to this MX host", fix: "publish A (and AAAA) records of mx.example.test"},
		{name: "no SPF", zone: edit(spfRecord, ""),
			status: Error, check: "SPF", subject: "example.test", message: "no SPF record", fix: `example.test. 3600 IN TXT "v=spf1 ip4:127.0.0.1 ip6:::1 ~all"`},
		{name: "SPF misses an address", zone: edit(spfRecord, `example.test. 3600 IN TXT "v=spf1 ip4:192.0.2.1 ip6:::1 ~all"`),
			status: Error, check: "SPF", subject: "example.test", message: "does not cover every outbound address: 127.0.0.1 gets softfail", fix: `"v=spf1 ip4:127.0.0.1 ip6:::1 ~all"`},
		{name: "two SPF records", zone: edit("", `example.test. 3600 IN TXT "v=spf1 -all"`),
			status: Error, check: "SPF", subject: "example.test", message: "2 SPF records", fix: `"v=spf1 ip4:127.0.0.1 ip6:::1 ~all"`},
		{name: "SPF over 10 lookups", zone: edit(spfRecord, tooManyLookups.String()),
			status: Error, check: "SPF", subject: "example.test", message: "more than the 10 DNS lookups", fix: "flatten the includes"},
		{name: "SPF over 10 lookups after our addresses", zone: edit(spfRecord, lookupsAfterOurs),
			status: Error, check: "SPF", subject: "example.test", message: "passes 127.0.0.1, ::1, but the rest of it needs more than the 10 DNS lookups", fix: "flatten the includes"},
		{name: "HELO name's SPF misses its address", zone: edit(`^mx\.example\.test\. 3600 IN TXT`, `mx.example.test. 3600 IN TXT "v=spf1 ip4:127.0.0.1 -all"`),
			status: Error, check: "SPF", subject: "mx.example.test", message: "::1 gets fail", fix: `mx.example.test. 3600 IN TXT "v=spf1 ip4:127.0.0.1 ip6:::1 -all"`},
		{name: "no DKIM key", zone: edit(`^r1\._domainkey`, ""),
			status: Error, check: "DKIM", subject: "r1._domainkey.example.test", message: "no DKIM key published", fix: "r1._domainkey.example.test. 3600 IN TXT \"v=DKIM1; k=rsa; p="},
		{name: "DKIM key of another private key", zone: edit(`^r1\._domainkey`, dkimRecord(t, rsa2)),
			status: Error, check: "DKIM", subject: "r1._domainkey.example.test", message: "the published key is not the key in the [[dkim.key]] file", fix: dkimRecord(t, rsaKey)},
		{name: "DKIM record unusable", zone: edit(`^e1\._domainkey`, `e1._domainkey.example.test. 3600 IN TXT "v=DKIM1; k=ed25519; p=c2hvcnQ="`),
			status: Error, check: "DKIM", subject: "e1._domainkey.example.test", message: "not a usable key (permerror: Ed25519 key is not 32 bytes)", fix: "e1._domainkey.example.test. 3600 IN TXT"},
		{name: "no DMARC", zone: edit(`^_dmarc`, ""),
			status: Error, check: "DMARC", subject: "_dmarc.example.test", message: "no DMARC record", fix: `_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@example.test"`},
		{name: "DMARC only at the public suffix domain", zone: edit(`^_dmarc`, `_dmarc.test. 3600 IN TXT "v=DMARC1; p=reject; psd=y"`),
			status: Warn, check: "DMARC", subject: "_dmarc.example.test", message: "no DMARC record of its own or of its organizational domain example.test: only the public suffix domain's record at _dmarc.test applies (policy reject)",
			fix: `_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=none`},
		{name: "DMARC lookup above the domain fails", zone: edit(`^_dmarc`, ""), setup: func(s *dnstest.Server) { s.Fail("_dmarc.test.", dns.RcodeServerFailure) },
			status: Error, check: "DMARC", subject: "_dmarc.example.test", message: "no DMARC record of its own, and looking for one above it failed: the DNS lookup of _dmarc.test failed"},
		{name: "DMARC policy other than asked", zone: edit(`^_dmarc`, `_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=reject"`),
			status: Warn, check: "DMARC", subject: "_dmarc.example.test", message: "has p=reject, but records.dmarc_policy is none", fix: "p=none"},
		{name: "DMARC without p=", zone: edit(`^_dmarc`, `_dmarc.example.test. 3600 IN TXT "v=DMARC1; rua=mailto:x@example.test"`),
			status: Error, check: "DMARC", subject: "_dmarc.example.test", message: "has no p= tag: receivers following RFC 7489 ignore it (RFC 9989 reads it as p=none)", fix: "p=none"},
		{name: "DMARC policy tag in capitals", zone: edit(`^_dmarc`, `_dmarc.example.test. 3600 IN TXT "v=DMARC1; P=reject; p=none"`),
			status: Warn, check: "DMARC", subject: "_dmarc.example.test", message: "has p=reject, but records.dmarc_policy is none", fix: "p=none"},
		{name: "DMARC reports to another domain without consent", toml: "[records]\nreport_address = \"reports@example.net\"\n",
			zone:   edit(`_report\._dmarc`, ""),
			status: Warn, check: "DMARC", subject: "example.test._report._dmarc.example.net", message: "no consent record", fix: `example.test._report._dmarc.example.net. 3600 IN TXT "v=DMARC1"`},
		{name: "MTA-STS id of another policy", zone: edit(`^_mta-sts`, `_mta-sts.example.test. 3600 IN TXT "v=STSv1; id=20240101"`),
			status: Error, check: "MTA-STS", subject: "_mta-sts.example.test", message: "the record's id 20240101 is not the id of the policy Sluice serves", fix: "_mta-sts.example.test. 3600 IN TXT \"v=STSv1; id="},
		{name: "no MTA-STS record", zone: edit(`^_mta-sts`, ""),
			status: Error, check: "MTA-STS", subject: "_mta-sts.example.test", message: "no MTA-STS record", fix: "_mta-sts.example.test. 3600 IN TXT \"v=STSv1; id="},
		{name: "MTA-STS policy host without address", zone: edit(`^mta-sts\.`, ""),
			status: Error, check: "MTA-STS", subject: "mta-sts.example.test", message: "no address: senders cannot fetch the policy", fix: "mta-sts.example.test. 3600 IN CNAME mx.example.test."},
		{name: "no TLS-RPT", zone: edit(`^_smtp\._tls`, ""),
			status: Warn, check: "TLS-RPT", subject: "_smtp._tls.example.test", message: "no TLS-RPT record", fix: `_smtp._tls.example.test. 3600 IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.test"`},
		{name: "HELO name without address", zone: edit(`^mx\.example\.test\. 3600 IN A `, ""),
			status: Error, check: "address", subject: "mx.example.test", message: "no A record", fix: "mx.example.test. 3600 IN A 127.0.0.1"},
		{name: "no PTR", zone: edit(`in-addr\.arpa`, ""),
			status: Error, check: "FCrDNS", subject: "127.0.0.1", message: "no PTR record", fix: "1.0.0.127.in-addr.arpa. 3600 IN PTR mx.example.test."},
		{name: "PTR not resolving back", zone: edit(`in-addr\.arpa`, "1.0.0.127.in-addr.arpa. 3600 IN PTR host.isp.example."),
			status: Error, check: "FCrDNS", subject: "127.0.0.1", message: "does not resolve back", fix: "1.0.0.127.in-addr.arpa. 3600 IN PTR mx.example.test."},
		{name: "PTR name other than the HELO name", zone: edit(`ip6\.arpa`, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. 3600 IN PTR host6.isp.example.\nhost6.isp.example. 3600 IN AAAA ::1"),
			status: Warn, check: "FCrDNS", subject: "::1", message: "the PTR name is host6.isp.example, but Sluice says EHLO mx.example.test", fix: "or set that source's helo to host6.isp.example"},
		{name: "certificate for another name", cert: &certSpec{names: []string{"other.example.test"}, validFor: 60 * 24 * time.Hour},
			status: Error, check: "certificate", message: "does not name mx.example.test (it names other.example.test)", fix: "get a certificate for mx.example.test"},
		{name: "certificate without a second MX of this machine", toml: twoMX, zone: edit("", "mx2.example.test. 3600 IN A 127.0.0.1"),
			status: Error, check: "certificate", message: "does not name mx2.example.test (it names mx.example.test)", fix: "get a certificate for mx2.example.test"},
		{name: "second MX without an address", toml: twoMX,
			status: Warn, check: "certificate", subject: "mx2.example.test", message: "not checked: mx2.example.test has no address to tell whether it is this gateway"},
		{name: "certificate expiring", cert: &certSpec{names: []string{"mx.example.test"}, validFor: 10 * 24 * time.Hour},
			status: Error, check: "certificate", message: "expires on " + on(10*24*time.Hour) + ", in 10 days", fix: "renew it"},
		{name: "certificate expired", cert: &certSpec{names: []string{"mx.example.test"}, validFor: -time.Hour},
			status: Error, check: "certificate", message: "expired on " + on(-time.Hour), fix: "renew it"},
		{name: "certificate self-signed", cert: &certSpec{names: []string{"mx.example.test"}, validFor: 60 * 24 * time.Hour, selfSigned: true},
			status: Warn, check: "certificate", message: "self-signed", fix: "[tls] acme = true"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cs := goodCert
			if c.cert != nil {
				cs = *c.cert
			}
			f := newFixture(t, gatewayTOML+c.toml, cs)
			zone := f.zone()
			if c.zone != nil {
				zone = c.zone(zone)
			}
			findings := f.run(t, zone, c.setup)
			var got *Finding
			for i, fd := range findings {
				if fd.Check == c.check && (c.subject == "" || fd.Name == c.subject) && fd.Status != OK {
					got = &findings[i]
					break
				}
			}
			if got == nil {
				t.Fatalf("no %s finding about %s; got\n%s", c.check, c.subject, report(findings))
			}
			if got.Status != c.status || !strings.Contains(got.Message, c.message) {
				t.Errorf("got %s %q, want %s with %q", got.Status, got.Message, c.status, c.message)
			}
			if c.fix != "" && !strings.Contains(strings.Join(got.Fix, "\n"), c.fix) {
				t.Errorf("fix %q lacks %q", got.Fix, c.fix)
			}
			if Failed(findings) != (c.status == Error) && c.setup == nil && c.toml == "" {
				t.Errorf("Failed() = %v with a %s", Failed(findings), c.status)
			}
		})
	}
}

// The certificate is read from where the configuration gets it: the ACME
// cache (autocert's file: the key, then the chain), or none yet; with a
// self-signed or no certificate, the doctor says how to get a real one.
func TestDoctorCertificateSources(t *testing.T) {
	noCert := strings.Replace(gatewayTOML, "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n", "", 1)
	noCert = strings.Replace(noCert, httpsTOML, "", 1)
	acme := strings.Replace(noCert, "domains = [\"example.test\"]\n", "domains = [\"example.test\"]\ndata_dir = \"data\"\n", 1) +
		"[tls]\nacme = true\nacme_email = \"postmaster@example.test\"\n" + httpsTOML
	cases := []struct {
		name     string
		toml     string
		acmeFile bool // put the certificate in the ACME cache
		status   Status
		message  string
	}{
		{name: "ACME certificate", toml: acme, acmeFile: true, status: OK, message: "names mx.example.test"},
		{name: "ACME certificate not yet obtained", toml: acme, status: Warn, message: "no certificate from the ACME CA yet"},
		{name: "self-signed at start", toml: strings.Replace(noCert, "[smtp]\n", "[smtp]\ntls_self_signed = true\n", 1), status: Warn, message: "a self-signed certificate made at start"},
		{name: "no certificate", toml: noCert, status: Warn, message: "no certificate: Sluice offers no STARTTLS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.toml, goodCert)
			if c.acmeFile {
				certs, key := certPEM(t, []string{"mx.example.test"}, now.Add(60*24*time.Hour), false)
				os.MkdirAll(f.cfg.ACMEDir(), 0o700)
				os.WriteFile(filepath.Join(f.cfg.ACMEDir(), "mx.example.test"), append(key, certs...), 0o600)
			}
			findings := f.run(t, f.zone(), nil)
			var got []Finding
			for _, fd := range findings {
				if fd.Check == "certificate" {
					got = append(got, fd)
				}
			}
			if len(got) == 0 || got[0].Status != c.status || !strings.Contains(got[0].Message, c.message) {
				t.Errorf("certificate findings %+v; want the first %s with %q", got, c.status, c.message)
			}
			if c.status == OK && (len(got) != 3 || Failed(findings)) {
				t.Errorf("not all ok:\n%s", report(findings))
			}
		})
	}
}

// Without configured outbound addresses, the hostname's are checked, and
// the doctor says so.
func TestDoctorWithoutSources(t *testing.T) {
	src := regexp.MustCompile(`(?s)\[\[relay\.source\]\].*?\[srs\]`).ReplaceAllString(gatewayTOML, "[srs]")
	f := newFixture(t, src, goodCert)
	zone := f.zone() + "\nmx.example.test. 3600 IN A 127.0.0.1\n1.0.0.127.in-addr.arpa. 3600 IN PTR mx.example.test.\n"
	zone = strings.Replace(zone, "a:mx.example.test", "ip4:127.0.0.1", 1)
	findings := f.run(t, zone, nil)
	want := map[string]bool{
		"warn address mx.example.test: no outbound address is configured ([[relay.source]]): checking mx.example.test's addresses (127.0.0.1)": false,
		"ok FCrDNS 127.0.0.1: mx.example.test resolves back to it, and is the HELO name":                                                       false,
		`ok SPF example.test: "v=spf1 ip4:127.0.0.1 ~all" passes 127.0.0.1`:                                                                    false,
		`ok SPF mx.example.test: "v=spf1 a -all" passes 127.0.0.1`:                                                                             false,
	}
	for _, fd := range findings {
		line := string(fd.Status) + " " + fd.Check + " " + fd.Name + ": " + fd.Message
		for w := range want {
			if strings.HasPrefix(line, w) {
				want[w] = true
			}
		}
	}
	for w, found := range want {
		if !found {
			t.Errorf("no finding %q in\n%s", w, report(findings))
		}
	}
	if Failed(findings) {
		t.Errorf("errors:\n%s", report(findings))
	}
}

// With ACME the certificate is Sluice's own: a problem with it is fixed by
// what keeps Sluice from getting the right one, never by "set [tls] acme
// = true", which is set.
func TestDoctorACMECertificateFixes(t *testing.T) {
	noCert := strings.Replace(gatewayTOML, "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n", "", 1)
	noCert = strings.Replace(noCert, httpsTOML, "", 1)
	acme := strings.Replace(noCert, "domains = [\"example.test\"]\n", "domains = [\"example.test\"]\ndata_dir = \"data\"\n", 1) +
		"[tls]\nacme = true\n" + httpsTOML + "[records]\nmx = [\"mx.example.test\", \"mx2.example.test\"]\n"
	f := newFixture(t, acme, goodCert)
	certs, key := certPEM(t, []string{"mx.example.test"}, now.Add(10*24*time.Hour), false)
	os.MkdirAll(f.cfg.ACMEDir(), 0o700)
	os.WriteFile(filepath.Join(f.cfg.ACMEDir(), "mx.example.test"), append(key, certs...), 0o600)
	findings := f.run(t, f.zone()+"mx2.example.test. 3600 IN A 127.0.0.1\n", nil) // this machine's
	want := map[string]string{
		"does not name mx2.example.test": "ACME gets a certificate for hostname (mx.example.test) only",
		"expires on":                     "renewal is failing: read the log's `acme:` lines",
	}
	for _, fd := range findings {
		if fd.Check != "certificate" {
			continue
		}
		fix := strings.Join(fd.Fix, "\n")
		if strings.Contains(fix, "acme = true") {
			t.Errorf("%q: fix %q says to set what is set", fd.Message, fix)
		}
		for msg, w := range want {
			if strings.Contains(fd.Message, msg) {
				if fd.Status != Error || !strings.Contains(fix, w) {
					t.Errorf("%s %q: fix %q, want an error with %q", fd.Status, fd.Message, fix, w)
				}
				delete(want, msg)
			}
		}
	}
	for msg := range want {
		t.Errorf("no certificate finding %q in\n%s", msg, report(findings))
	}
}

// A certificate from a private ACME CA (a step-ca of the organisation,
// Pebble in tests) does not verify with the roots senders on the internet
// have: the certificate is a warning and the policy cannot be fetched,
// each with a fix that says how to tell the doctor that your senders
// trust the CA (-ca-file). With the CA's root among the roots, all is ok.
func TestDoctorACMEPrivateCA(t *testing.T) {
	noCert := strings.Replace(gatewayTOML, "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n", "", 1)
	noCert = strings.Replace(noCert, httpsTOML, "", 1)
	acme := strings.Replace(noCert, "domains = [\"example.test\"]\n", "domains = [\"example.test\"]\ndata_dir = \"data\"\n", 1) +
		"[tls]\nacme = true\n" + httpsTOML
	f := newFixture(t, acme, goodCert)
	private, err := certs.NewCA("Private ACME CA")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string) (chain, key []byte) {
		cert, err := private.Issue(now.Add(60*24*time.Hour), name)
		if err != nil {
			t.Fatal(err)
		}
		if chain, key, err = certs.PEM(cert); err != nil {
			t.Fatal(err)
		}
		return chain, key
	}
	chain, key := issue("mx.example.test")
	os.MkdirAll(f.cfg.ACMEDir(), 0o700)
	os.WriteFile(filepath.Join(f.cfg.ACMEDir(), "mx.example.test"), append(key, chain...), 0o600)
	p, _ := f.cfg.MTASTSPolicy()
	mtaChain, mtaKey := issue("mta-sts.example.test")
	port := policyServerWith(t, mtaChain, mtaKey, p.String())
	srv := dnstest.Start(t, f.zone())
	r, err := resolver.New(resolver.Config{Nameservers: []string{srv.Addr()}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	run := func(roots *x509.CertPool) map[string]Finding {
		found := map[string]Finding{}
		for _, fd := range Run(context.Background(), Options{Config: f.cfg, Plan: f.plan, Resolver: r, Now: now, Roots: roots, HTTPSPort: port}) {
			if fd.Status != OK {
				found[fd.Check] = fd
			}
		}
		return found
	}

	found := run(testCA(t).Pool())
	if c := found["certificate"]; c.Status != Warn || !strings.Contains(c.Message, "not verifiable") || !strings.Contains(strings.Join(c.Fix, "\n"), "sluice doctor -ca-file") {
		t.Errorf("certificate: %+v; want a warning that it is not verifiable, with -ca-file in the fix", c)
	}
	if m := found["MTA-STS"]; m.Status != Error || !strings.Contains(m.Message, "certificate signed by unknown authority") || !strings.Contains(strings.Join(m.Fix, "\n"), "sluice doctor -ca-file") {
		t.Errorf("MTA-STS: %+v; want an error that the policy cannot be fetched, with -ca-file in the fix", m)
	}
	if len(found) != 2 {
		t.Errorf("findings not ok: %+v; want the certificate's and the policy's", found)
	}

	roots := testCA(t).Pool()
	roots.AppendCertsFromPEM(private.PEM())
	if found := run(roots); len(found) != 0 {
		t.Errorf("with the private CA's root, findings not ok: %+v", found)
	}
}

// The policy is fetched as senders fetch it, from mta-sts.<domain> over
// HTTPS with a certificate for that name, and compared with the
// configuration's: each way senders would not get it is an error.
func TestDoctorPolicyServed(t *testing.T) {
	const url = "https://mta-sts.example.test/.well-known/mta-sts.txt"
	elsewhere := strings.Replace(gatewayTOML, httpsTOML, "", 1)
	closedPort := func(t *testing.T) int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	cases := []struct {
		name    string
		toml    string
		zone    func(string) string
		port    func(t *testing.T, policy string) int
		status  Status
		message string
		fix     string
	}{
		{name: "served", toml: gatewayTOML,
			port:   func(t *testing.T, p string) int { return policyServer(t, []string{"mta-sts.example.test"}, p) },
			status: OK, message: "serves the policy (mode enforce, mx mx.example.test, max_age 604800)"},
		{name: "certificate without the policy host", toml: gatewayTOML,
			port:   func(t *testing.T, p string) int { return policyServer(t, []string{"mx.example.test"}, p) },
			status: Error, message: "senders cannot fetch the policy: tls: failed to verify certificate: x509: certificate is valid for mx.example.test, not mta-sts.example.test",
			fix: "smtp.tls_cert, which must also name mta-sts.example.test"},
		{name: "certificate about to expire", toml: gatewayTOML,
			port: func(t *testing.T, p string) int {
				return policyServerUntil(t, []string{"mta-sts.example.test"}, p, now.Add(10*24*time.Hour))
			},
			status: Error, message: "the certificate of mta-sts.example.test expires on " + on(10*24*time.Hour) + ", in 10 days",
			fix: "renew it, or set [tls] acme = true"},
		{name: "served elsewhere, certificate about to expire", toml: strings.Replace(gatewayTOML, httpsTOML, "", 1),
			zone: edit("", "mta-sts.example.test. 3600 IN A 127.0.0.1"),
			port: func(t *testing.T, p string) int {
				return policyServerUntil(t, []string{"mta-sts.example.test"}, p, now.Add(13*24*time.Hour))
			},
			status: Error, message: "expires on " + on(13*24*time.Hour) + ", in 13 days", fix: "the web server at mta-sts.example.test must renew its certificate"},
		{name: "certificate expired", toml: gatewayTOML,
			port: func(t *testing.T, p string) int {
				return policyServerUntil(t, []string{"mta-sts.example.test"}, p, now.Add(-time.Hour))
			},
			status: Error, message: "senders cannot fetch the policy: tls: failed to verify certificate: x509: certificate has expired"},
		{name: "another policy served", toml: gatewayTOML,
			port: func(t *testing.T, _ string) int {
				return policyServer(t, []string{"mta-sts.example.test"}, "version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 86400\n")
			},
			status: Error, message: "the policy served (mode testing, mx mx.example.test, max_age 86400) is not the configuration's (mode enforce", fix: "reload it"},
		{name: "nothing listening", toml: gatewayTOML, port: func(t *testing.T, _ string) int { return closedPort(t) },
			status: Error, message: "senders cannot fetch the policy: dial tcp [::1]:", fix: "[https] listen must be reachable on port 443"},
		{name: "served elsewhere", toml: elsewhere,
			zone:   edit("", "mta-sts.example.test. 3600 IN A 127.0.0.1"),
			port:   func(t *testing.T, p string) int { return policyServer(t, []string{"mta-sts.example.test"}, p) },
			status: OK, message: "serves the policy"},
		{name: "served elsewhere, as text/html", toml: elsewhere,
			zone:   edit("", "mta-sts.example.test. 3600 IN A 127.0.0.1"),
			port:   func(t *testing.T, p string) int { return policyServer(t, []string{"mta-sts.example.test"}, "html:"+p) },
			status: Error, message: `senders cannot fetch the policy: content type "text/html" is not text/plain`},
		{name: "served elsewhere, without an address", toml: elsewhere,
			port:   func(t *testing.T, _ string) int { return closedPort(t) },
			status: Error, message: "mta-sts.example.test has no address", fix: "publish an A/AAAA (or CNAME) record of mta-sts.example.test"},
		{name: "served elsewhere, another policy", toml: elsewhere,
			zone: edit("", "mta-sts.example.test. 3600 IN A 127.0.0.1"),
			port: func(t *testing.T, _ string) int {
				return policyServer(t, []string{"mta-sts.example.test"}, "version: STSv1\nmode: none\nmx: mx.example.test\nmax_age: 86400\n")
			},
			status: Error, message: "is not the configuration's", fix: "  mode: enforce"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.toml, goodCert)
			zone := f.zone()
			if c.zone != nil {
				zone = c.zone(zone)
			}
			p, _ := f.cfg.MTASTSPolicy()
			findings := f.runWith(t, zone, nil, c.port(t, p.String()))
			var got *Finding
			for i, fd := range findings {
				if fd.Name == url {
					got = &findings[i]
				}
			}
			if got == nil {
				t.Fatalf("no finding about %s in\n%s", url, report(findings))
			}
			if got.Status != c.status || !strings.Contains(got.Message, c.message) {
				t.Errorf("got %s %q, want %s with %q", got.Status, got.Message, c.status, c.message)
			}
			if c.fix != "" && !strings.Contains(strings.Join(got.Fix, "\n"), c.fix) {
				t.Errorf("fix %q lacks %q", got.Fix, c.fix)
			}
		})
	}
}

// Sources of one family only: the relay's connections of the other come
// from an address the system picks, which nothing covers; with IPv6 off,
// IPv4 sources alone are the whole story.
func TestDoctorSourceFamilies(t *testing.T) {
	v4only := strings.Replace(gatewayTOML, "[[relay.source]]\naddress = \"::1\"\n", "", 1)
	for _, c := range []struct {
		name, toml, want string
	}{
		{"IPv4 only", v4only, "no IPv6 [[relay.source]]: mail to IPv6 destinations leaves from an address the system picks"},
		{"IPv4 only, IPv6 off", strings.Replace(v4only, "[relay]\n", "[relay]\nipv6 = false\n", 1), ""},
		{"IPv6 only", strings.Replace(gatewayTOML, "[[relay.source]]\naddress = \"127.0.0.1\"\n", "", 1), "no IPv4 [[relay.source]]: mail to IPv4 destinations leaves"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.toml, goodCert)
			var got []string
			for _, fd := range f.run(t, f.zone(), nil) {
				if fd.Name == "relay.source" {
					got = append(got, string(fd.Status)+" "+fd.Message+" / "+strings.Join(fd.Fix, " "))
				}
			}
			switch {
			case c.want == "" && len(got) > 0:
				t.Errorf("findings %q, want none", got)
			case c.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], "warn "+c.want) || !strings.Contains(got[0], "add a [[relay.source]]")):
				t.Errorf("findings %q, want one warning %q", got, c.want)
			}
		})
	}
}

// A served subdomain without a DMARC record of its own is covered by its
// organizational domain's, found as the gateway finds records ([auth]
// dmarc_discovery): ok when the policy that applies to it (sp=, else p=)
// is records.dmarc_policy, a warning when not, and the finding names the
// record.
func TestDoctorDMARCOfOrganizationalDomain(t *testing.T) {
	sub := strings.Replace(gatewayTOML, `domains = ["example.test"]`, `domains = ["sub.example.test"]`, 1)
	rfc7489 := sub + "[auth]\ndmarc_discovery = \"rfc7489\"\n"
	for _, c := range []struct {
		name, toml, zone string
		setup            func(*dnstest.Server)
		status           Status
		message          string
		fix              string
	}{
		{name: "covered", toml: sub, zone: `_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=none"`,
			status: OK, message: "no record of its own: the organizational domain's record at _dmarc.example.test covers sub.example.test (found by auth.dmarc_discovery = rfc9989), with policy none"},
		{name: "covered by rfc7489", toml: rfc7489, zone: `_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=none"`,
			status: OK, message: "the organizational domain's record at _dmarc.example.test covers sub.example.test (found by auth.dmarc_discovery = rfc7489), with policy none"},
		{name: "covered by a record in the middle of the walk", toml: strings.Replace(sub, "sub.example.test", "a.sub.example.test", 1),
			zone:   "_dmarc.sub.example.test. 3600 IN TXT \"v=DMARC1; p=reject\"\n_dmarc.example.test. 3600 IN TXT \"v=DMARC1; p=none\"",
			status: OK, message: "the organizational domain's record at _dmarc.example.test covers a.sub.example.test"},
		{name: "covered with another policy", toml: sub, zone: `_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=reject; sp=quarantine"`,
			status: Warn, message: "_dmarc.example.test covers sub.example.test (found by auth.dmarc_discovery = rfc9989), with policy quarantine, but records.dmarc_policy is none",
			fix: `set sp= (or p=) of _dmarc.example.test to none, or publish sub.example.test's own:`},
		{name: "not covered", toml: sub, zone: "",
			status: Error, message: "no DMARC record: receivers apply no policy to forgeries of sub.example.test", fix: `_dmarc.sub.example.test. 3600 IN TXT "v=DMARC1; p=none`},
		{name: "organizational domain's record unusable", toml: sub, zone: `_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=none"` + "\n" + `_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=reject"`,
			status: Error, message: "(receivers find no DMARC record for sub.example.test or above it in the DNS tree (_dmarc.example.test has 2 DMARC records, so none applies))"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.toml, goodCert)
			var got []Finding
			for _, fd := range f.run(t, edit(`^_dmarc`, c.zone)(f.zone()), c.setup) {
				if fd.Check == "DMARC" {
					got = append(got, fd)
				}
			}
			if len(got) != 1 {
				t.Fatalf("DMARC findings %+v, want one", got)
			}
			if got[0].Status != c.status || !strings.Contains(got[0].Message, c.message) {
				t.Errorf("got %s %q, want %s with %q", got[0].Status, got[0].Message, c.status, c.message)
			}
			if fix := strings.Join(got[0].Fix, "\n"); c.fix != "" && !strings.Contains(fix, c.fix) {
				t.Errorf("fix %q lacks %q", fix, c.fix)
			}
		})
	}
}

// The certificate is checked for the MX hosts that are this gateway: the
// hostname, or a host at one of this machine's addresses (outbound, or a
// specific smtp.listen one). A second MX elsewhere is another gateway's,
// with a certificate of its own.
func TestDoctorCertificateOfEachMX(t *testing.T) {
	listen := strings.Replace(gatewayTOML, "[smtp]\n", "[smtp]\nlisten = [\"127.0.0.9:25\"]\n", 1) + twoMX
	for _, c := range []struct {
		name, toml, zone string
		status           Status
		message          string
	}{
		{"another machine", gatewayTOML + twoMX, "mx2.example.test. 3600 IN A 192.0.2.7",
			OK, "another machine (192.0.2.7, none of this gateway's addresses): its certificate is checked by sluice doctor there"},
		{"an outbound address", gatewayTOML + twoMX, "mx2.example.test. 3600 IN AAAA ::1",
			Error, "does not name mx2.example.test (it names mx.example.test): senders that verify refuse it"},
		{"a listen address", listen, "mx2.example.test. 3600 IN A 127.0.0.9",
			Error, "does not name mx2.example.test"},
		{"a listen address, another machine", listen, "mx2.example.test. 3600 IN A 127.0.0.8",
			OK, "another machine (127.0.0.8, none of this gateway's addresses)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.toml, goodCert)
			findings := f.run(t, f.zone()+c.zone+"\n", nil)
			var got []string
			for _, fd := range findings {
				if fd.Check == "certificate" && (fd.Name == "mx2.example.test" || strings.Contains(fd.Message, "mx2.example.test")) {
					got = append(got, string(fd.Status)+" "+fd.Message)
				}
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], string(c.status)+" ") || !strings.Contains(got[0], c.message) {
				t.Errorf("certificate findings about mx2.example.test %q, want one %s with %q", got, c.status, c.message)
			}
			if Failed(findings) != (c.status == Error) {
				t.Errorf("Failed() = %v:\n%s", Failed(findings), report(findings))
			}
		})
	}
}
