package dnsrecords

import (
	"bytes"
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
)

// loadConfig writes src as gateway.toml in a temporary directory, with a
// new key in keys/SELECTOR.pem for each selector given, and loads it.
func loadConfig(t *testing.T, src string, keys map[string]string) (*config.Config, map[string]crypto.Signer) {
	t.Helper()
	dir := t.TempDir()
	signers := map[string]crypto.Signer{}
	for sel, alg := range keys {
		k, err := dkim.GenerateKey(alg, 0)
		if err != nil {
			t.Fatal(err)
		}
		pem, _ := dkim.MarshalKey(k)
		os.MkdirAll(filepath.Join(dir, "keys"), 0o755)
		if err := os.WriteFile(filepath.Join(dir, "keys", sel+".pem"), pem, 0o600); err != nil {
			t.Fatal(err)
		}
		signers[sel] = k
	}
	path := filepath.Join(dir, "gateway.toml")
	os.WriteFile(path, []byte(src), 0o644)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c, signers
}

const base = `hostname = "mx.example.test"
domains = ["example.test", "example.org"]
[srs]
secrets = ["0123456789abcdef0123"]
[dkim]
domain = "example.test"
[[dkim.key]]
selector = "r1"
file = "keys/r1.pem"
[[dkim.key]]
selector = "e1"
file = "keys/e1.pem"
`

// buildZone builds c's plan and its zone text, and parses that.
func buildZone(t *testing.T, c *config.Config) (Plan, string, []dns.RR) {
	t.Helper()
	plan, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	var zone bytes.Buffer
	plan.WriteZone(&zone)
	return plan, zone.String(), zoneRecords(t, zone.String())
}

// zoneRecords parses the zone text as a nameserver would, failing on any
// line that is not a record or a comment.
func zoneRecords(t *testing.T, zone string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	for i, line := range strings.Split(zone, "\n") {
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil || rr == nil {
			t.Fatalf("line %d does not parse as a record: %v\n%s", i+1, err, line)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

// With outbound addresses, an include-free SPF lists them; each address
// gets its A/AAAA and PTR to its HELO name; MTA-STS has the id of the
// policy served; reports to another domain get that domain's consent.
func TestBuildWithSources(t *testing.T) {
	c, keys := loadConfig(t, base+`
[relay]
helo = "out.example.test"
[[relay.source]]
address = "192.0.2.10"
[[relay.source]]
address = "2001:db8::10"
helo = "out6.example.test"
[smtp]
tls_self_signed = true
[https]
listen = ["127.0.0.1:443"]
[mta_sts]
mode = "enforce"
[records]
mx = ["mx.example.test", "mx2.example.test"]
dmarc_policy = "quarantine"
`, map[string]string{"r1": "rsa", "e1": "ed25519"})
	plan, zone, rrs := buildZone(t, c)
	has := map[string]bool{}
	for _, rr := range rrs {
		h := rr.Header()
		has[h.Name+" "+dns.TypeToString[h.Rrtype]+" "+strings.TrimPrefix(rr.String(), h.String())] = true
	}
	policy, _ := c.MTASTSPolicy()
	for _, want := range []string{
		`example.test. MX 10 mx.example.test.`,
		`example.test. MX 20 mx2.example.test.`,
		`example.org. MX 10 mx.example.test.`,
		`example.test. TXT "v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 ~all"`,
		`example.org. TXT "v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 ~all"`,
		`out.example.test. A 192.0.2.10`,
		`out6.example.test. AAAA 2001:db8::10`,
		`out.example.test. TXT "v=spf1 ip4:192.0.2.10 -all"`,
		`out6.example.test. TXT "v=spf1 ip6:2001:db8::10 -all"`,
		`10.2.0.192.in-addr.arpa. PTR out.example.test.`,
		`0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR out6.example.test.`,
		`_dmarc.example.test. TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"`,
		`_dmarc.example.org. TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"`,
		`example.org._report._dmarc.example.test. TXT "v=DMARC1"`,
		`_mta-sts.example.test. TXT "v=STSv1; id=` + policy.ID() + `"`,
		`mta-sts.example.org. CNAME mx.example.test.`,
		`_smtp._tls.example.org. TXT "v=TLSRPTv1; rua=mailto:postmaster@example.test"`,
	} {
		if !has[want] {
			t.Errorf("no record %s in\n%s", want, zone)
		}
	}
	if has[`example.test._report._dmarc.example.test. TXT "v=DMARC1"`] {
		t.Error("a domain's own reports need no consent record")
	}
	// The policy served, in the comments, as mtasts reads it.
	_, after, _ := strings.Cut(zone, "https://mta-sts.example.test/.well-known/mta-sts.txt:\n")
	var text strings.Builder
	for _, line := range strings.Split(after, "\n") {
		s, ok := strings.CutPrefix(line, ";     ")
		if !ok {
			break
		}
		text.WriteString(s + "\n")
	}
	if p, err := mtasts.Parse(text.String()); err != nil || p.String() != policy.String() {
		t.Errorf("the policy in the comments is %q (%v), want %q", text.String(), err, policy.String())
	}
	checkDKIM(t, rrs, keys, "example.test")
	checkJSON(t, plan, rrs)
}

// checkDKIM checks that each key has its record, whose p= is its public key.
func checkDKIM(t *testing.T, rrs []dns.RR, keys map[string]crypto.Signer, domain string) {
	t.Helper()
	for sel, key := range keys {
		name := sel + "._domainkey." + domain + "."
		found := false
		for _, rr := range rrs {
			txt, ok := rr.(*dns.TXT)
			if !ok || txt.Hdr.Name != name {
				continue
			}
			found = true
			for _, s := range txt.Txt {
				if len(s) > 255 {
					t.Errorf("%s: a string of %d bytes", name, len(s))
				}
			}
			pub, err := dkim.PublicKey(strings.Join(txt.Txt, ""))
			if err != nil || !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Errorf("%s: the record is not the key's (%v): %s", name, err, txt)
			}
		}
		if !found {
			t.Errorf("no DKIM record %s", name)
		}
	}
}

// checkJSON checks that the JSON form holds the records of the zone form.
func checkJSON(t *testing.T, plan Plan, rrs []dns.RR) {
	t.Helper()
	var js bytes.Buffer
	plan.WriteJSON(&js)
	var list []Record
	if err := json.Unmarshal(js.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != len(rrs) {
		t.Fatalf("%d records in JSON, %d in the zone", len(list), len(rrs))
	}
	for i, r := range list {
		rr, err := dns.NewRR(r.Name + " " + strconv.Itoa(r.TTL) + " IN " + r.Type + " " + r.Value)
		if err != nil || rr.String() != rrs[i].String() {
			t.Errorf("JSON record %d is %v (%v), the zone's %v", i, rr, err, rrs[i])
		}
		if r.Comment == "" || r.Domain == "" {
			t.Errorf("JSON record %d has no comment or domain: %+v", i, r)
		}
		// A TXT record's text, unquoted and joined, for DNS APIs.
		want := ""
		if txt, ok := rrs[i].(*dns.TXT); ok {
			want = strings.Join(txt.Txt, "")
		}
		if r.Text != want {
			t.Errorf("JSON record %d has text %q, want %q", i, r.Text, want)
		}
	}
}

// Without outbound addresses, SPF names the hostname and the addresses
// are placeholders in comments; an include replaces the addresses; an SRS
// or DKIM domain that is not served gets its SPF too, and the DKIM
// records go under the signing domain.
func TestBuildWithoutSources(t *testing.T) {
	src := strings.Replace(base, `domain = "example.test"`, `domain = "sign.example.net"`, 1)
	src = strings.Replace(src, "[srs]\n", "[srs]\ndomain = \"srs.example.net\"\n", 1)
	c, keys := loadConfig(t, src, map[string]string{"r1": "rsa", "e1": "ed25519"})
	plan, zone, rrs := buildZone(t, c)
	for _, want := range []string{
		"\nexample.test. 3600 IN TXT \"v=spf1 a:mx.example.test ~all\" ;",
		"\nsrs.example.net. 3600 IN TXT \"v=spf1 a:mx.example.test -all\" ;",
		"\nsign.example.net. 3600 IN TXT \"v=spf1 a:mx.example.test ~all\" ;",
		"\nmx.example.test. 3600 IN TXT \"v=spf1 a -all\" ;",
		"\n;     mx.example.test. 3600 IN A    <IPv4 address>",
	} {
		if !strings.Contains(zone, want) {
			t.Errorf("no %q in\n%s", want[1:], zone)
		}
	}
	for _, rr := range rrs {
		if typ := rr.Header().Rrtype; typ == dns.TypePTR || typ == dns.TypeA || typ == dns.TypeAAAA {
			t.Errorf("an address record without a configured address: %s", rr)
		}
	}
	checkDKIM(t, rrs, keys, "sign.example.net")
	checkJSON(t, plan, rrs)

	c, _ = loadConfig(t, base+"[records]\nspf_include = \"_spf.provider.example\"\n", map[string]string{"r1": "rsa", "e1": "ed25519"})
	plan, _ = Build(c)
	if spf := plan.Find(KindSPF)[0]; spf.Text != "v=spf1 include:_spf.provider.example ~all" {
		t.Errorf("with spf_include: %s", spf)
	}
}

// A key file that cannot be read is an error at its line.
func TestBuildMissingKey(t *testing.T) {
	c, _ := loadConfig(t, base, map[string]string{"r1": "rsa"})
	_, err := Build(c)
	if err == nil || !strings.Contains(err.Error(), "gateway.toml:12: ") || !strings.Contains(err.Error(), "e1.pem") {
		t.Errorf("Build with a missing key file: %v", err)
	}
}

// Long TXT data is split into strings of at most 255 bytes, with quotes
// and backslashes escaped.
func TestQuoteTXT(t *testing.T) {
	long := strings.Repeat("a", 300)
	if got := QuoteTXT(long); got != `"`+long[:255]+`" "`+long[255:]+`"` {
		t.Errorf("QuoteTXT(300 bytes) = %s", got)
	}
	if got := QuoteTXT(`a"b\c`); got != `"a\"b\\c"` {
		t.Errorf("QuoteTXT = %s", got)
	}
}

// A policy that Sluice does not serve ([https] listen not set) is served
// by another web server: no record points mta-sts.<domain> at the
// gateway, and the comments say what to serve, and where.
func TestBuildMTASTSServedElsewhere(t *testing.T) {
	c, _ := loadConfig(t, base+"[mta_sts]\nmode = \"testing\"\n", map[string]string{"r1": "rsa", "e1": "ed25519"})
	plan, zone, _ := buildZone(t, c)
	if rs := plan.Find(KindMTASTSHost); len(rs) != 0 {
		t.Errorf("records point mta-sts.<domain> at the gateway, which does not serve the policy: %v", rs)
	}
	if len(plan.Find(KindMTASTS)) != 2 {
		t.Errorf("want the _mta-sts record of both domains in\n%s", zone)
	}
	if want := ";   with a certificate for mta-sts.example.org, at https://mta-sts.example.org/.well-known/mta-sts.txt:\n;     version: STSv1\n;     mode: testing\n"; !strings.Contains(zone, want) {
		t.Errorf("no %q in\n%s", want, zone)
	}
}

// Reports to a subdomain of the domain stay within its organization and
// need no consent record; reports to another domain do.
func TestBuildReportConsent(t *testing.T) {
	c, _ := loadConfig(t, base+"[records]\nreport_address = \"dmarc@reports.example.test\"\n", map[string]string{"r1": "rsa", "e1": "ed25519"})
	plan, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range plan.Find(KindDMARCReport) {
		names = append(names, r.Name)
	}
	if want := []string{"example.org._report._dmarc.reports.example.test."}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("consent records %v, want %v", names, want)
	}
}

// A domain the submission service's users send as says so in its SPF
// record's comment: its addresses are the ones the destination checks for
// that mail too (no SRS). A domain no user sends as does not.
func TestBuildSPFCommentForSubmission(t *testing.T) {
	c, _ := loadConfig(t, base+`
[[relay.source]]
address = "192.0.2.10"
[smtp]
tls_self_signed = true
[submission]
listen = ["127.0.0.1:587"]
[[submission.user]]
name = "me"
password_hash = "$argon2id$v=19$m=65536,t=3,p=4$ljgUQ4CJLqMzzfdSD+/9yQ$OUGbgUY1wgrhIYkWxJJFyqRl+Q4XeOm9ri80Sxf0FQE"
senders = ["*@example.org"]
`, map[string]string{"r1": "rsa", "e1": "ed25519"})
	plan, _, _ := buildZone(t, c)
	comments := map[string]string{}
	for _, s := range plan.Sections {
		for _, r := range s.Records {
			if r.Type == "TXT" && strings.HasPrefix(r.Text, "v=spf1") {
				comments[r.Name] = r.Comment
			}
		}
	}
	if got := comments["example.org."]; !strings.Contains(got, "for mail its users send as example.org ([submission])") {
		t.Errorf("example.org's SPF comment is %q, want it to name the submission service", got)
	}
	if got := comments["example.test."]; strings.Contains(got, "[submission]") || !strings.Contains(got, "as Sluice does for forwarded mail (SRS);") {
		t.Errorf("example.test's SPF comment is %q, want forwarded mail (SRS) alone", got)
	}
}
