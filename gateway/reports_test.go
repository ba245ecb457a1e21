package gateway_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	e.zone += reportsZone
	if err := e.dns.SetRecords(e.zone); err != nil {
		t.Fatal(err)
	}
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
	e.zone += reportsZone
	if err := e.dns.SetRecords(e.zone); err != nil {
		t.Fatal(err)
	}
	if err := e.send(t, "ann@pass.example", "info@ours.test", "From: Ann <ann@pass.example>\r\nSubject: hi\r\n\r\nhi\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "reports")); !os.IsNotExist(err) {
		t.Errorf("data_dir/reports exists with reports off: %v", err)
	}
}
