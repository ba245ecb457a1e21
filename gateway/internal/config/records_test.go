package config

import (
	"strings"
	"testing"
)

// [records] defaults come from the domains, and what it names is
// normalised as the rest of the configuration is.
func TestRecordsDefaultsAndNormalisation(t *testing.T) {
	base := "hostname = \"mx.example.test\"\ndomains = [\"example.test\", \"example.org\"]\n[srs]\nsecrets = [\"0123456789abcdef0123\"]\n"
	c, err := Parse("records.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.Records.DMARCPolicy != "none" || c.Records.ReportAddress != "postmaster@example.test" {
		t.Errorf("defaults: dmarc_policy %q, report_address %q; want none, postmaster@example.test", c.Records.DMARCPolicy, c.Records.ReportAddress)
	}
	if got := strings.Join(c.MXHosts(), " "); got != "mx.example.test" {
		t.Errorf("MXHosts() = %q, want the hostname", got)
	}
	c, err = Parse("records.toml", []byte(base+"[records]\nmx = [\"MX1.Example.test\", \"mx2.example.test\"]\nspf_include = \"_SPF.Example.net\"\ndmarc_policy = \"reject\"\nreport_address = \"dmarc@Example.NET\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Records
	if got := strings.Join(c.MXHosts(), " "); got != "mx1.example.test mx2.example.test" {
		t.Errorf("MXHosts() = %q, want records.mx in lower case", got)
	}
	if r.SPFInclude != "_spf.example.net" || r.DMARCPolicy != "reject" || r.ReportAddress != "dmarc@example.net" {
		t.Errorf("records = %+v", r)
	}
}

// Fully qualified names, written with their final dot as in a zone file,
// are taken without it, on every key that names a domain or a host.
func TestTrailingDots(t *testing.T) {
	src := `hostname = "MX.example.test."
domains = ["example.test.", "example.org."]
[relay]
helo = "out.example.test."
[[relay.source]]
address = "127.0.0.1"
helo = "out1.example.test."
[srs]
domain = "srs.example.test."
secrets = ["0123456789abcdef0123"]
[dkim]
domain = "example.org."
[records]
mx = ["mx.example.test.", "mx2.example.test."]
spf_include = "_spf.example.net."
[mta_sts]
mode = "testing"
mx = ["mx.example.test.", "*.example.test."]
`
	c, err := Parse("dots.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join([]string{c.Hostname, strings.Join(c.Domains, ","), c.Relay.Helo, c.Relay.Sources[0].Helo, c.SRS.Domain, c.DKIM.Domain,
		strings.Join(c.MXHosts(), ","), c.Records.SPFInclude, strings.Join(c.MTASTS.MX, ",")}, " ")
	want := "mx.example.test example.test,example.org out.example.test out1.example.test srs.example.test example.org mx.example.test,mx2.example.test _spf.example.net mx.example.test,*.example.test"
	if got != want {
		t.Errorf("names\n%s\nwant\n%s", got, want)
	}
	// Without srs.domain and dkim.domain, both are domains[0], without the dot.
	c, err = Parse("dots.toml", []byte("hostname = \"mx.example.test.\"\ndomains = [\"example.test.\"]\n[srs]\nsecrets = [\"0123456789abcdef0123\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.SRS.Domain != "example.test" || c.DKIM.Domain != "example.test" || c.Records.ReportAddress != "postmaster@example.test" {
		t.Errorf("defaults from domains[0]: srs %q, dkim %q, report_address %q", c.SRS.Domain, c.DKIM.Domain, c.Records.ReportAddress)
	}
}

// [reports]: off by default, from postmaster@ the DKIM domain and named
// after the hostname; from must be a plain address.
func TestReportsDefaultsAndValidation(t *testing.T) {
	base := "hostname = \"mx.example.test\"\ndomains = [\"example.test\"]\n[srs]\nsecrets = [\"0123456789abcdef0123\"]\n"
	c, err := Parse("reports.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Reports; r.DMARC || r.TLS || r.From != "postmaster@example.test" || r.OrgName != "mx.example.test" {
		t.Errorf("defaults: %+v", r)
	}
	c, err = Parse("reports.toml", []byte(base+"[reports]\ndmarc = true\nfrom = \"Reports@Example.TEST\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Reports.From != "Reports@example.test" {
		t.Errorf("from = %q, want the domain in lower case", c.Reports.From)
	}
	_, err = Parse("reports.toml", []byte(base+"[reports]\ndmarc = true\nfrom = \"Reports <reports@example.test>\"\n"))
	if err == nil || !strings.Contains(err.Error(), "reports.from") {
		t.Errorf("a from with a display name: %v, want an error at reports.from", err)
	}
}
