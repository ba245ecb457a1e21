package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// The demo as the README runs it, with the real binary and the shipped
// gateway.toml (ports and paths moved into a temporary directory): serve,
// send one message, find it in the capture inbox rewritten and signed;
// then from 127.0.0.2, which the demo's DNS blocklist lists: refused at
// RCPT, but for postmaster.
func TestDemoWithTheRealBinary(t *testing.T) {
	dir := t.TempDir()
	bin := buildSluice(t, dir)

	// The keys, as `make run` makes them; keep the TXT records keygen prints.
	txt := map[string]string{}
	for _, k := range []struct{ sel, alg string }{{"rsa-demo", "rsa"}, {"ed-demo", "ed25519"}} {
		out, err := exec.Command(bin, "keygen", "-algorithm", k.alg, "-selector", k.sel, "-domain", "your-domain.test",
			"-out", filepath.Join(dir, "var/keys", k.sel+".pem")).Output()
		if err != nil {
			t.Fatalf("keygen: %v", err)
		}
		rec := string(out[strings.Index(string(out), `"`):])
		txt[k.sel+"._domainkey.your-domain.test."] = strings.NewReplacer(`" "`, "", `"`, "", "\n", "").Replace(rec)
	}

	src, err := os.ReadFile("../../../gateway.toml")
	if err != nil {
		t.Fatal(err)
	}
	smtpAddr, inboxAddr := freeAddr(t), freeAddr(t)
	_, inboxPort, _ := net.SplitHostPort(inboxAddr)
	cfg := strings.NewReplacer(
		`"127.0.0.1:2525"`, `"`+smtpAddr+`"`,
		`"127.0.0.1:2526"`, `"`+inboxAddr+`"`,
		"port = 2526", "port = "+inboxPort,
		`"plugins/router/router.wasm"`, `"`+wasmbuild.ForTest(t, "./plugins/router")+`"`,
		`"plugins/dmarc/dmarc.wasm"`, `"`+wasmbuild.ForTest(t, "./plugins/dmarc")+`"`,
		`"plugins/dnsbl/dnsbl.wasm"`, `"`+wasmbuild.ForTest(t, "./plugins/dnsbl")+`"`,
		"[log]", "[wasm]\ncache_dir = \""+wasmbuild.CacheDirForTest()+"\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]",
	).Replace(string(src))
	if strings.Count(cfg, smtpAddr) != 1 || strings.Count(cfg, inboxAddr) != 1 {
		t.Fatal("gateway.toml no longer has the demo's addresses; update this test")
	}
	cfgPath := filepath.Join(dir, "gateway.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)

	if out, err := exec.Command(bin, "check", "-c", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("sluice check: %v\n%s", err, out)
	}

	serve := startServe(t, bin, cfgPath)
	serve.waitLog("dev inbox listening")

	out, err := exec.Command(bin, "send", "-server", smtpAddr, "-to", "info@your-domain.test,old@your-domain.test").CombinedOutput()
	if err != nil {
		t.Fatalf("sluice send: %v\n%s", err, out)
	}
	for _, want := range []string{
		"STARTTLS: encrypted",
		"RCPT TO:<info@your-domain.test>: 250",
		"RCPT TO:<old@your-domain.test>: 550 5.1.1 This address is no longer in use",
		"DATA: 250 2.0.0 Stored as ",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sluice send printed:\n%s\nwant a line with %q", out, want)
		}
	}
	serve.waitLog("msg=message")

	files, _ := filepath.Glob(filepath.Join(dir, "var/inbox/*.eml"))
	if len(files) != 1 {
		t.Fatalf("inbox holds %v, want one message", files)
	}
	msg, _ := os.ReadFile(files[0])
	if !bytes.HasPrefix(msg, []byte("Return-Path: <SRS0=")) || !bytes.Contains(msg, []byte("Delivered-To: me@inbox.test\r\n")) {
		t.Errorf("the stored message lacks the SRS envelope or the destination:\n%.300s", msg)
	}
	// The demo's static DNS answers every check: nothing needed the internet.
	for _, want := range []string{"Authentication-Results: mx.your-domain.test; spf=pass", "dmarc=pass", "ARC-Seal: ", "cv=none",
		"Received: from client.example.org (client.example.org [127.0.0.1])"} {
		if !bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n "), []byte(" ")), []byte(want)) {
			t.Errorf("the stored message lacks %q:\n%.1500s", want, msg)
		}
	}
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return []string{txt[name+"."]}, nil },
	})
	if err != nil || len(vs) != 2 {
		t.Fatalf("DKIM: %d signatures, %v", len(vs), err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("DKIM signature of %s: %v", v.Domain, v.Err)
		}
	}

	// A client the demo's blocklist lists, as the README shows it.
	out, err = exec.Command(bin, "send", "-server", smtpAddr, "-source", "127.0.0.2",
		"-to", "info@your-domain.test,postmaster@your-domain.test").CombinedOutput()
	if err != nil {
		t.Fatalf("sluice send -source 127.0.0.2: %v\n%s", err, out)
	}
	for _, want := range []string{
		"RCPT TO:<info@your-domain.test>: 554 5.7.1 127.0.0.2 found on one or more DNSBLs (dnsbl.test). Refer to https://your-domain.test/blocked\n",
		"RCPT TO:<postmaster@your-domain.test>: 250",
		"DATA: 250 2.0.0 Stored as ",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sluice send -source 127.0.0.2 printed:\n%s\nwant a line with %q", out, want)
		}
	}

	// SIGTERM stops it cleanly.
	serve.stop()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
