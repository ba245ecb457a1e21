package gateway_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
	"github.com/sluice-mail/sluice/gateway/internal/reports/reportcheck"
)

// reportsZone adds a sender whose SPF allows loopback and whose DMARC
// record asks for aggregate reports.
const reportsZone = `
pass.example.          300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.pass.example.   300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@pass.example"
`

// readRecords waits until the day's record file of kind has n lines
// (the writer appends them after the sessions' replies), and returns
// them decoded.
func readRecords(t *testing.T, dataDir, kind string, n int) []map[string]any {
	t.Helper()
	path := filepath.Join(dataDir, "reports", kind+"-"+time.Now().UTC().Format("2006-01-02")+".jsonl")
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(data) > 0 && len(lines) >= n {
			var out []map[string]any
			for _, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				out = append(out, m)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %q; want %d records", path, data, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With [reports] on, each message's DMARC evaluation and each relay
// session's TLS result are recorded under data_dir/reports.
func TestReportsRecordTheMailFlow(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	e := startEnv(t, envOptions{top: fmt.Sprintf("data_dir = %q", dataDir), sections: "[reports]\ndmarc = true\ntls = true\n"})
	e.addRecords(t, reportsZone)
	for i := range 2 {
		msg := fmt.Sprintf("From: Ann <ann@pass.example>\r\nSubject: hello %d\r\n\r\nhello\r\n", i)
		if err := e.send(t, "ann@pass.example", "info@ours.test", msg); err != nil {
			t.Fatal(err)
		}
	}
	err := e.send(t, "bob@strict.example", "info@ours.test", "From: Bob <bob@strict.example>\r\nSubject: spoofed\r\n\r\nhello\r\n")
	if err == nil {
		t.Fatal("a message failing DMARC under p=reject was accepted")
	}
	recs := readRecords(t, dataDir, "dmarc", 3)
	got := map[string]int{}
	for _, r := range recs {
		got[fmt.Sprintf("%v %v spf=%v dkim=%v ip=%v", r["pd"], r["disp"], r["spf"], r["dkim"], r["ip"])]++
	}
	want := map[string]int{
		"pass.example none spf=true dkim=false ip=127.0.0.1":      2,
		"strict.example reject spf=false dkim=false ip=127.0.0.1": 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("DMARC records %v, want %v", got, want)
	}
	tls := readRecords(t, dataDir, "tls", 2)
	for _, r := range tls {
		if r["domain"] != "dest.test" || r["type"] != "no-policy-found" || r["host"] != "mx.dest.test" || r["ip"] != "127.0.0.1" {
			t.Errorf("TLS record %v; want dest.test, no-policy-found, mx.dest.test, 127.0.0.1", r)
		}
	}
}

// Off by default: nothing recorded, no reports directory.
func TestReportsOffByDefault(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	e := startEnv(t, envOptions{top: fmt.Sprintf("data_dir = %q", dataDir)})
	e.addRecords(t, reportsZone)
	if err := e.send(t, "ann@pass.example", "info@ours.test", "From: Ann <ann@pass.example>\r\nSubject: hi\r\n\r\nhi\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "reports")); !os.IsNotExist(err) {
		t.Errorf("data_dir/reports exists with reports off: %v", err)
	}
}

// The day's reports go through the queue to the rua addresses, signed:
// the DMARC report validates against RFC 9990's schema and counts the
// day's messages; the TLS report counts the relay's sessions.
func TestReportsSentThroughTheQueue(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	e := startEnv(t, envOptions{top: fmt.Sprintf("data_dir = %q", dataDir), sections: "[reports]\ndmarc = true\ntls = true\norg_name = \"Ours\"\n"})
	e.addRecords(t, reportsZone+`
pass.example.          300 IN MX 10 mx.dest.test.
_smtp._tls.dest.test.  300 IN TXT "v=TLSRPTv1; rua=mailto:tls@dest.test"
`)
	for i := range 2 {
		msg := fmt.Sprintf("From: Ann <ann@pass.example>\r\nSubject: hello %d\r\n\r\nhello\r\n", i)
		if err := e.send(t, "ann@pass.example", "info@ours.test", msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.send(t, "bob@pass.example", "info@ours.test", "From: Bob <bob@pass.example>\r\nSubject: x\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	readRecords(t, dataDir, "dmarc", 3)
	readRecords(t, dataDir, "tls", 3)
	forwarded := len(e.dest.deliveries())

	if err := e.gw.SendReports(t.Context(), time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	reports := map[string]delivery{}
	deadline := time.Now().Add(10 * time.Second)
	for len(reports) < 2 {
		for _, d := range e.dest.deliveries()[forwarded:] {
			reports[d.to[0]] = d
		}
		if time.Now().After(deadline) {
			t.Fatalf("reports delivered: %v; want to dmarc@pass.example and tls@dest.test", reports)
		}
		time.Sleep(20 * time.Millisecond)
	}
	records := map[string]string{}
	for sel, txt := range e.keys {
		records[sel+"._domainkey.ours.test."] = txt
	}
	for to, d := range reports {
		if d.from != "postmaster@ours.test" {
			t.Errorf("report to %s from %q, want postmaster@ours.test", to, d.from)
		}
		if got := dkimpy.Check(t, d.data, records); len(got.DKIM) < 2 || !got.DKIM[0] || !got.DKIM[1] {
			t.Errorf("dkimpy: the report to %s: DKIM %v, want our two signatures valid", to, got.DKIM)
		}
	}

	dm := reportcheck.Parse(t, reports["dmarc@pass.example"].data)
	reportcheck.Validate(t, dm.Attachment)
	if !strings.HasPrefix(dm.Headers["Subject"], "Report Domain: pass.example Submitter: mx.ours.test") ||
		dm.AttachmentType != "application/gzip" || !strings.HasPrefix(dm.Filename, "mx.ours.test!pass.example!") {
		t.Errorf("DMARC report: Subject %q, attachment %s %q", dm.Headers["Subject"], dm.AttachmentType, dm.Filename)
	}
	for _, want := range []string{"<org_name>Ours</org_name>", "<email>postmaster@ours.test</email>",
		"<source_ip>127.0.0.1</source_ip>", "<count>3</count>", "<disposition>none</disposition>",
		"<header_from>pass.example</header_from>", "<p>reject</p>"} {
		if !strings.Contains(dm.Attachment, want) {
			t.Errorf("the DMARC report lacks %s:\n%s", want, dm.Attachment)
		}
	}

	tr := reportcheck.Parse(t, reports["tls@dest.test"].data)
	if tr.Headers["TLS-Report-Domain"] != "dest.test" || tr.ContentType != "multipart/report" || tr.ReportType != "tlsrpt" ||
		tr.AttachmentType != "application/tlsrpt+gzip" {
		t.Errorf("TLS report: %+v", tr)
	}
	var rep struct {
		Policies []struct {
			Policy  map[string]any `json:"policy"`
			Summary map[string]int `json:"summary"`
		} `json:"policies"`
	}
	if err := json.Unmarshal([]byte(tr.Attachment), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Policies) != 1 || rep.Policies[0].Policy["policy-type"] != "no-policy-found" ||
		rep.Policies[0].Summary["total-successful-session-count"]+rep.Policies[0].Summary["total-failure-session-count"] != 3 {
		t.Errorf("TLS report: %s; want 3 sessions under no-policy-found", tr.Attachment)
	}
}

// startTLSReportEnv starts a gateway that records TLS results in
// dataDir, under tls_security verify with a tls_ca_file (caFile) that
// trusts no destination, and whose destination dest.test asks for TLS
// reports (to tls@dest.test).
func startTLSReportEnv(t *testing.T) (e *env, dataDir, caFile string) {
	t.Helper()
	caFile = untrustedCAFile(t)
	dataDir = filepath.Join(t.TempDir(), "data")
	e = startEnv(t, envOptions{top: fmt.Sprintf("data_dir = %q", dataDir), sections: "[reports]\ntls = true\n",
		relay: fmt.Sprintf("tls_security = \"verify\"\ntls_ca_file = %q", caFile)})
	e.addRecords(t, `_smtp._tls.dest.test.  300 IN TXT "v=TLSRPTv1; rua=mailto:tls@dest.test"`+"\n")
	return e, dataDir, caFile
}

// A failing STARTTLS (an untrusted certificate under tls_security
// verify) and a session that succeeds once the certificate is trusted
// are both in the TLS report, the failure with its result type, host
// and address.
func TestTLSReportCountsAFailingSTARTTLS(t *testing.T) {
	e, dataDir, caFile := startTLSReportEnv(t)
	if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", testMessage); err == nil {
		t.Fatal("delivered to an untrusted destination under tls_security verify")
	}
	trustDest(t, e, caFile)
	if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("with the destination trusted: %v", err)
	}
	readRecords(t, dataDir, "tls", 2)
	if err := e.gw.SendReports(t.Context(), time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var report []byte
	deadline := time.Now().Add(10 * time.Second)
	for report == nil {
		for _, d := range e.dest.deliveries() {
			if d.to[0] == "tls@dest.test" {
				report = d.data
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no TLS report delivered to tls@dest.test")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tr := reportcheck.Parse(t, report)
	var rep struct {
		Org      string `json:"organization-name"`
		Policies []struct {
			Policy  map[string]any `json:"policy"`
			Summary struct {
				OK     int `json:"total-successful-session-count"`
				Failed int `json:"total-failure-session-count"`
			} `json:"summary"`
			Failures []map[string]any `json:"failure-details"`
		} `json:"policies"`
	}
	if err := json.Unmarshal([]byte(tr.Attachment), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Policies) != 1 || rep.Org != "mx.ours.test" {
		t.Fatalf("TLS report %s", tr.Attachment)
	}
	p := rep.Policies[0]
	if p.Policy["policy-type"] != "no-policy-found" || p.Policy["policy-domain"] != "dest.test" ||
		p.Summary.OK != 1 || p.Summary.Failed != 1 || len(p.Failures) != 1 ||
		p.Failures[0]["result-type"] != "certificate-not-trusted" || p.Failures[0]["receiving-mx-hostname"] != "mx.dest.test" ||
		p.Failures[0]["receiving-ip"] != "127.0.0.1" || p.Failures[0]["failed-session-count"] != float64(1) {
		t.Errorf("TLS report %s; want 1 success and 1 certificate-not-trusted at mx.dest.test[127.0.0.1]", tr.Attachment)
	}
}

// A TLS report is delivered despite the TLS failure it reports (RFC 8460
// §3): the destination's certificate stays untrusted under tls_security
// verify, so mail to it is deferred, but the report to it goes, and its
// own session is not recorded for the next report.
func TestTLSReportDeliveredDespiteTLSFailure(t *testing.T) {
	e, dataDir, _ := startTLSReportEnv(t)
	if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", testMessage); err == nil {
		t.Fatal("delivered to an untrusted destination under tls_security verify")
	}
	readRecords(t, dataDir, "tls", 1)
	if err := e.gw.SendReports(t.Context(), time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(e.dest.deliveries()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the TLS report was not delivered to the destination whose TLS fails")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := e.dest.deliveries()[0]; d.to[0] != "tls@dest.test" {
		t.Fatalf("delivered to %v, want the report to tls@dest.test", d.to)
	}
	// Mail is still held to tls_security; its session is the only one
	// recorded since the report (in tomorrow's file: today is sealed).
	if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", testMessage); err == nil {
		t.Fatal("delivered mail to an untrusted destination under tls_security verify")
	}
	path := filepath.Join(dataDir, "reports", "tls-"+time.Now().UTC().Add(24*time.Hour).Format("2006-01-02")+".jsonl")
	var data []byte
	for deadline := time.Now().Add(10 * time.Second); len(data) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no TLS record in %s", path)
		}
		data, _ = os.ReadFile(path)
	}
	if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], `"certificate-not-trusted"`) {
		t.Errorf("TLS records after the report: %q; want only the deferred message's failure", lines)
	}
}

// Reports from an address our DKIM signature does not align with are
// discarded by their receivers: the gateway says so when it starts, and
// says nothing for the default, postmaster@ the DKIM domain.
func TestReportsFromUnalignedIsWarned(t *testing.T) {
	const warning = "reports: receivers will discard them"
	e := startEnv(t, envOptions{sections: "[reports]\ndmarc = true\nfrom = \"reports@elsewhere.test\"\n"})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.logs.String(), warning) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning for reports.from at another domain than [dkim]'s:\n%s", e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	aligned := startEnv(t, envOptions{sections: "[reports]\ndmarc = true\nfrom = \"dmarc@reports.ours.test\"\n"})
	if err := aligned.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err) // the gateway is up: Serve has started the reports
	}
	if strings.Contains(aligned.logs.String(), warning) {
		t.Errorf("warned for reports.from at a subdomain of the DKIM domain:\n%s", aligned.logs.String())
	}
}
