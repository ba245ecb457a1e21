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
