package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/sluice-mail/sluice/gateway/internal/freeport"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// The demo as the README's "Try it" runs it, with the real binary and the
// shipped gateway.toml (ports and paths moved into a temporary directory):
// every `bin/sluice send` the README shows is run, in order, and prints
// what the README says; every `cat` of the inbox shows the X- fields the
// README says, in the message the send before it stored. Beyond the
// README's text, the test checks that it still shows the demo's chain at
// work (the router's refusal, a quarantine and a refusal by score, the
// blocklist's refusal and postmaster@ let through, a second destination
// domain queued under the demo's data_dir), and the first message's SRS
// envelope, signatures and authentication results.
func TestDemoWithTheRealBinary(t *testing.T) {
	d := startDemo(t, "")
	bin, dir, smtpAddr, serve, txt := d.bin, d.dir, d.smtpAddr, d.serve, d.txt

	readme := filepath.Join(moduleRoot, "README.md")
	var stored []string // each message the capture inbox stored, in order
	var shown strings.Builder
	for _, c := range readTryIt(t, readme) {
		if c.args[0] == "cat" {
			if len(stored) == 0 {
				t.Fatalf("README.md:%d: cat before any message was stored", c.line)
			}
			file := stored[len(stored)-1]
			if ok, _ := filepath.Match(filepath.Base(c.args[1]), filepath.Base(file)); !ok {
				t.Errorf("README.md:%d: cat %s does not show %s, the message the send before it stored", c.line, c.args[1], filepath.Base(file))
			}
			msg := readInbox(t, dir, file)
			for _, f := range xFields(c.want) {
				if !strings.Contains(msg, "\n"+f+"\n") {
					t.Errorf("README.md:%d: the stored message lacks\n%s\nit is:\n%s", c.line, f, msg)
				}
			}
			for _, re := range receivedFields(c.want) {
				if !re.MatchString(msg) {
					t.Errorf("README.md:%d: the stored message has no Received field like\n%s\nit is:\n%s", c.line, re, msg)
				}
			}
			continue
		}
		if c.args[0] == "queue" {
			out := demoQueue(t, bin, d.adminAddr, c.args[1:], c.want)
			shown.WriteString(c.want)
			// The queue is the demo's data_dir's: var/queue.
			for _, id := range queueID.FindAllString(out, -1) {
				if _, err := os.Stat(filepath.Join(dir, "var/queue", id+".eml")); err != nil {
					t.Errorf("README.md:%d: the queued message %s is not in var/queue: %v", c.line, id, err)
				}
			}
			continue
		}
		if c.args[0] == "swaks" {
			out := demoSwaks(t, d, c.args)
			shown.WriteString(c.want)
			if missing := linesMissing(storedAs.ReplaceAllString(out, "Stored as X.eml"), storedAs.ReplaceAllString(c.want, "Stored as X.eml")); missing != "" {
				t.Errorf("README.md:%d: swaks printed\n%s\nwithout the line the README shows\n%s", c.line, out, missing)
			}
			if m := storedAs.FindStringSubmatch(out); m != nil {
				stored = append(stored, m[1])
				serve.waitLog(m[1])
			}
			continue
		}
		if c.args[0] == "curl" {
			if got := demoFetch(t, d.httpsAddr, c.args); got != c.want {
				t.Errorf("README.md:%d: %s gave\n%sthe README shows\n%s", c.line, strings.Join(c.args, " "), got, c.want)
			}
			continue
		}
		cmd := exec.Command(bin, append([]string{"send", "-server", smtpAddr}, c.args[1:]...)...)
		cmd.Stdin = strings.NewReader(c.stdin)
		out, _ := cmd.CombinedOutput()
		shown.WriteString(c.want)
		if got := storedAs.ReplaceAllString(string(out), "Stored as X.eml"); got != storedAs.ReplaceAllString(c.want, "Stored as X.eml") {
			t.Errorf("README.md:%d: bin/sluice %s printed\n%sthe README shows\n%s", c.line, strings.Join(c.args, " "), out, c.want)
		}
		if m := storedAs.FindStringSubmatch(string(out)); m != nil {
			stored = append(stored, m[1])
			serve.waitLog(m[1])
		}
	}
	// What the README must go on showing: each part of the chain at work.
	for _, want := range []string{
		"RCPT TO:<old@your-domain.test>: 550 5.1.1 This address is no longer in use",
		"DATA: 550 5.7.1 Message scored ",
		"RCPT TO:<info@your-domain.test>: 554 5.7.1 127.0.0.2 found on one or more DNSBLs (dnsbl.test). Refer to https://your-domain.test/blocked\n",
		"RCPT TO:<postmaster@your-domain.test>: 250",
		"RCPT TO:<team@your-domain.test>: 250",
		"  you@elsewhere.test  451 4.4.1 elsewhere.test: ",
	} {
		if !strings.Contains(shown.String(), want) {
			t.Errorf("README.md's Try it no longer shows %q", want)
		}
	}
	if len(stored) < 3 {
		t.Fatalf("the README's sends stored %d messages, want 3 (plain, quarantined, to postmaster@)", len(stored))
	}
	for i, want := range []string{"X-Spam-Flag: NO\n", "X-Sluice-Quarantine: score ", "X-Spam-Score: "} {
		if msg := readInbox(t, dir, stored[i]); !strings.Contains(msg, want) {
			t.Errorf("stored message %d lacks %q:\n%s", i+1, want, msg)
		}
	}

	first, _ := os.ReadFile(filepath.Join(dir, "var/inbox", stored[0]))
	if !bytes.HasPrefix(first, []byte("Return-Path: <SRS0=")) || !bytes.Contains(first, []byte("Delivered-To: me@inbox.test\r\n")) {
		t.Errorf("the stored message lacks the SRS envelope or the destination:\n%.300s", first)
	}
	// The demo's static DNS answers every check: nothing needed the internet.
	for _, want := range []string{"Authentication-Results: mx.your-domain.test; spf=pass", "dmarc=pass", "ARC-Seal: ", "cv=none",
		"Received: from client.example.org (client.example.org [127.0.0.1])"} {
		if !strings.Contains(readInbox(t, dir, stored[0]), want) {
			t.Errorf("the stored message lacks %q:\n%.1500s", want, first)
		}
	}
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(first), &msgdkim.VerifyOptions{
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

	// The internationalised message arrived over SMTPUTF8 with its UTF-8
	// addresses intact: in the SRS address, the trace and the header.
	if len(stored) < 4 {
		t.Fatalf("the README's sends stored %d messages, want a 4th, to piñata@your-domain.test", len(stored))
	}
	eai := readInbox(t, dir, stored[3])
	for _, want := range []string{"Return-Path: <SRS0=", "=example.org=pelé@your-domain.test>\n", "\nDelivered-To: me@inbox.test\n",
		") by mx.your-domain.test (Sluice) with UTF8SMTPS id ", " for <piñata@your-domain.test>; ", "\nFrom: <pelé@example.org>\n", "\nTo: <piñata@your-domain.test>\n"} {
		if !strings.Contains(eai, want) {
			t.Errorf("the message to piñata@your-domain.test lacks %q:\n%.1500s", want, eai)
		}
	}

	// team@'s first destination domain was relayed in session; the other
	// was queued, not relayed.
	if len(stored) < 5 {
		t.Fatalf("the README's sends stored %d messages, want a 5th, to team@your-domain.test", len(stored))
	}
	if team := readInbox(t, dir, stored[4]); !strings.Contains(team, "\nDelivered-To: me@inbox.test\n") || strings.Contains(team, "elsewhere.test") {
		t.Errorf("the message to team@your-domain.test went to the capture inbox for other than me@inbox.test alone:\n%.300s", team)
	}

	// The message sent as info@ with swaks left as the user's own: no SRS,
	// signed with your-domain.test's keys, both verified.
	if len(stored) < 6 {
		t.Fatalf("the README's sends stored %d messages, want a 6th, sent as info@your-domain.test with swaks", len(stored))
	}
	sent := readInbox(t, dir, stored[5])
	for _, want := range []string{"Return-Path: <info@your-domain.test>\n", "\nDelivered-To: friend@inbox.test\n", "\nFrom: info@your-domain.test\n",
		"\nAuthentication-Results: mx.your-domain.test; auth=pass smtp.auth=me\n", " with ESMTPSA id ", " tls TLS_"} {
		if !strings.Contains(sent, want) {
			t.Errorf("the message sent with swaks lacks %q:\n%.1500s", want, sent)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "var/inbox", stored[5]))
	vs, err = msgdkim.VerifyWithOptions(bytes.NewReader(raw), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return []string{txt[name+"."]}, nil },
	})
	if err != nil || len(vs) != 2 {
		t.Fatalf("DKIM of the message sent with swaks: %d signatures, %v", len(vs), err)
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "your-domain.test" {
			t.Errorf("DKIM signature of the message sent with swaks: d=%s, %v; want a valid one by your-domain.test", v.Domain, v.Err)
		}
	}

	// What the README says of the other logins and senders, in prose:
	// swaks run so, against the demo, gets the replies it names.
	demoSubmissionRefusals(t, d, readme)

	// The console's demo login is the one the README gives.
	demoLogin(t, d.adminAddr, readme)

	// SIGTERM stops it cleanly.
	serve.stop()
}

// demoSubmissionRefusals checks the replies the README's Try it names
// after sending as info@ with swaks, each with that swaks command changed
// as the README says: without --tls, with a wrong password, as another
// sender, and on the implicit TLS port with --tlsc.
func demoSubmissionRefusals(t *testing.T, d *demo, readme string) {
	t.Helper()
	text, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	prose := strings.Join(strings.Fields(string(text)), " ")
	base := []string{"--auth-user", "me", "--auth-password", "send-demo", "--from", "info@your-domain.test", "--to", "friend@inbox.test"}
	set := func(args []string, flag, value string) []string {
		args = slices.Clone(args)
		args[slices.Index(args, flag)+1] = value
		return args
	}
	for _, c := range []struct {
		server string
		args   []string
		said   string // in the README, in backticks
		want   string // in swaks's output
	}{
		{d.submitAddr, base, "Host did not advertise authentication", "*** Host did not advertise authentication"},
		{d.submitAddr, append([]string{"--tls"}, set(base, "--auth-password", "wrong")...), "535 5.7.8", "<~* 535 5.7.8 "},
		{d.submitAddr, append([]string{"--tls"}, set(base, "--from", "someone@example.org")...), "553 5.7.1 <me> may not send as <someone@example.org>", "<~* 553 5.7.1 <me> may not send as <someone@example.org>"},
		{d.submitTLSAddr, append([]string{"--tlsc"}, base...), "--tlsc", "<~  250 2.0.0 Stored as "},
	} {
		if !strings.Contains(prose, "`"+c.said+"`") {
			t.Errorf("README.md's Try it no longer says `%s`; update this test", c.said)
		}
		out, _ := exec.Command("/usr/bin/swaks", append([]string{"--server", c.server}, c.args...)...).CombinedOutput()
		if !strings.Contains(string(out), c.want) {
			t.Errorf("swaks %v printed\n%s\nwithout %q, which the README's `%s` says", c.args, out, c.want, c.said)
		}
		if m := storedAs.FindStringSubmatch(string(out)); m != nil {
			d.serve.waitLog(m[1])
		}
	}
}

// demoLogin logs in to the demo's console with the user and password the
// README gives.
func demoLogin(t *testing.T, adminAddr, readme string) {
	t.Helper()
	text, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("log in as `([^`]+)` with the password\\s+`([^`]+)`").FindSubmatch(text)
	if m == nil {
		t.Fatal("README.md no longer gives the demo console's user and password")
	}
	base := "http://" + adminAddr
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	form, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(form)
	if token == nil {
		t.Fatalf("GET /login: %s, no csrf field:\n%s", resp.Status, form)
	}
	resp, err = c.PostForm(base+"/login", url.Values{"user": {string(m[1])}, "password": {string(m[2])}, "csrf": {string(token[1])}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("logging in to the demo's console as %s with the README's password: %s to %q, want 303 to /", m[1], resp.Status, resp.Header.Get("Location"))
	}
}

// The README's way to turn greylisting on in the demo: its ```toml block
// that names the greylist plugin, added at the end of gateway.toml, loads,
// and the first message gets the reply the README shows.
func TestDemoWithGreylisting(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(moduleRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var block string
	for _, b := range strings.Split(string(src), "```toml\n")[1:] {
		if b, _, _ = strings.Cut(b, "```"); strings.Contains(b, `name = "greylist"`) {
			block = b
		}
	}
	if block == "" {
		t.Fatal("README.md shows no ```toml block with the greylist plugin")
	}
	d := startDemo(t, block)
	out, _ := exec.Command(d.bin, "send", "-server", d.smtpAddr).CombinedOutput()
	want := "RCPT TO:<info@your-domain.test>: 451 4.7.1 Greylisted, try again in 60 seconds"
	if !strings.Contains(string(out), want+"\n") {
		t.Errorf("sluice send printed\n%swant %q", out, want)
	}
	if !strings.Contains(strings.Join(strings.Fields(string(src)), " "), "`"+want+"`") {
		t.Errorf("README.md no longer shows %q", want)
	}
	d.serve.stop()
}

// demo is the README's demo, served by the real binary from a temporary
// directory.
type demo struct {
	bin, dir, smtpAddr string
	submitAddr         string // the submission listener (STARTTLS), the README's 127.0.0.1:5587
	submitTLSAddr      string // the submission listener (implicit TLS), the README's 127.0.0.1:5465
	httpsAddr          string // the HTTPS listener, for the MTA-STS policy
	adminAddr          string // the admin listener, which sluice queue asks
	serve              *served
	txt                map[string]string // the DKIM keys' TXT records, by name
}

// startDemo serves the shipped gateway.toml, with extra added at its end,
// its ports and paths moved into a temporary directory and its plugins
// built from source, after `sluice check` passed it.
func startDemo(t *testing.T, extra string) *demo {
	t.Helper()
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

	src, err := os.ReadFile(filepath.Join(moduleRoot, "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	smtpAddr, inboxAddr, httpsAddr, adminAddr := freeport.Addr(t), freeport.Addr(t), freeport.Addr(t), freeport.Addr(t)
	submitAddr, submitTLSAddr := freeport.Addr(t), freeport.Addr(t)
	_, inboxPort, _ := net.SplitHostPort(inboxAddr)
	cfg := strings.NewReplacer(
		`"127.0.0.1:2525"`, `"`+smtpAddr+`"`,
		`"127.0.0.1:2526"`, `"`+inboxAddr+`"`,
		`"127.0.0.1:8443"`, `"`+httpsAddr+`"`,
		`"127.0.0.1:5587"`, `"`+submitAddr+`"`,
		`"127.0.0.1:5465"`, `"`+submitTLSAddr+`"`,
		"port = 2526", "port = "+inboxPort,
		"[log]", "[wasm]\ncache_dir = \""+wasmbuild.CacheDirForTest()+"\"\n[admin]\nlisten = \""+adminAddr+"\"\n[log]",
	).Replace(string(src))
	if strings.Count(cfg, smtpAddr) != 1 || strings.Count(cfg, inboxAddr) != 1 || strings.Count(cfg, httpsAddr) != 1 ||
		strings.Count(cfg, submitAddr) != 1 || strings.Count(cfg, submitTLSAddr) != 1 {
		t.Fatal("gateway.toml no longer has the demo's addresses; update this test")
	}
	// Every plugin the demo names, built from source.
	var names []string
	cfg = demoPluginPath.ReplaceAllStringFunc(cfg+"\n"+extra, func(p string) string {
		name := demoPluginPath.FindStringSubmatch(p)[1]
		names = append(names, name)
		return `path = "` + wasmbuild.ForTest(t, "./plugins/"+name) + `"`
	})
	if got := strings.Join(names, ","); !strings.HasPrefix(got, "dnsbl,ratelimit,router,spam,dmarc") {
		t.Errorf("the demo's chain is %s; update the README's Try it and this test", got)
	}
	cfgPath := filepath.Join(dir, "gateway.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)

	if out, err := exec.Command(bin, "check", "-c", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("sluice check: %v\n%s", err, out)
	}
	serve := startServe(t, bin, cfgPath)
	serve.waitLog("dev inbox listening")
	return &demo{bin: bin, dir: dir, smtpAddr: smtpAddr, submitAddr: submitAddr, submitTLSAddr: submitTLSAddr, httpsAddr: httpsAddr, adminAddr: adminAddr, serve: serve, txt: txt}
}

var (
	demoPluginPath = regexp.MustCompile(`path = "plugins/([a-z]+)/[a-z]+\.wasm"`)
	storedAs       = regexp.MustCompile(`Stored as (\S+\.eml)`)
)

// tryItCommand is a command of the README's Try it: `bin/sluice send ...`
// or `bin/sluice queue ...` (its arguments after bin/sluice, and a
// here-document as its input),
// `cat var/inbox/...`, `swaks --server 127.0.0.1:5587 ...` (the demo's
// submission listener) or `curl -sk --resolve NAME:PORT:IP URL`, with the
// lines the README shows after it.
type tryItCommand struct {
	line  int
	args  []string
	stdin string
	want  string
}

// readTryIt reads the commands of the README's "## Try it" section: the
// lines of ```sh blocks that start with "$ ".
func readTryIt(t *testing.T, path string) []tryItCommand {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []tryItCommand
	var cmd *tryItCommand
	in, block, heredoc := false, false, false
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case !block && strings.HasPrefix(line, "## "):
			in = line == "## Try it"
		case !in:
		case !block && line == "```sh":
			block = true
		case block && line == "```":
			block, cmd = false, nil
		case !block:
		case strings.HasPrefix(line, "$ bin/sluice send ") || strings.HasPrefix(line, "$ bin/sluice queue ") || strings.HasPrefix(line, "$ cat var/inbox/"):
			args := strings.Fields(strings.TrimPrefix(strings.TrimPrefix(line, "$ "), "bin/sluice "))
			if heredoc = args[len(args)-1] == "<<'EOF'"; heredoc {
				args = args[:len(args)-1]
			}
			for _, a := range args {
				if strings.ContainsAny(a, `'"<>|;$`) {
					t.Fatalf("README.md:%d: %q: the test runs only plain arguments and <<'EOF'", n, a)
				}
			}
			cmds = append(cmds, tryItCommand{line: n, args: args})
			cmd = &cmds[len(cmds)-1]
		case strings.HasPrefix(line, "$ swaks --server 127.0.0.1:5587 "):
			args := strings.Fields(strings.TrimPrefix(line, "$ "))
			cmds = append(cmds, tryItCommand{line: n, args: args})
			cmd = &cmds[len(cmds)-1]
		case strings.HasPrefix(line, "$ curl -sk --resolve "):
			cmds = append(cmds, tryItCommand{line: n, args: strings.Fields(strings.TrimPrefix(line, "$ "))})
			cmd = &cmds[len(cmds)-1]
		case strings.HasPrefix(line, "$ "):
			t.Fatalf("README.md:%d: %q: the test runs only bin/sluice send, bin/sluice queue, cat var/inbox/, swaks --server 127.0.0.1:5587 and curl -sk --resolve", n, line)
		case cmd == nil:
		case heredoc && line == "EOF":
			heredoc = false
		case heredoc:
			cmd.stdin += line + "\r\n"
		default:
			cmd.want += line + "\n"
		}
	}
	if len(cmds) < 4 {
		t.Fatalf("README.md's Try it has %d commands the test runs, want at least 4", len(cmds))
	}
	return cmds
}

// demoFetch does what `curl -sk --resolve NAME:PORT:IP URL` does, at the
// demo's HTTPS listener (addr) rather than the README's port: it asks for
// URL's path with URL's host name as SNI and Host, not verifying the
// self-signed certificate, and returns the body with "\n" line ends.
func demoFetch(t *testing.T, addr string, args []string) string {
	t.Helper()
	if len(args) != 5 {
		t.Fatalf("curl %v: want curl -sk --resolve NAME:PORT:IP URL", args[1:])
	}
	u, err := url.Parse(args[4])
	if err != nil || u.Scheme != "https" || !strings.HasPrefix(args[3], u.Host+":") {
		t.Fatalf("curl %v: the URL's host:port is not the one --resolve names", args[1:])
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	resp, err := client.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", u, resp.Status, err)
	}
	return strings.ReplaceAll(string(body), "\r\n", "\n")
}

// demoSwaks runs the README's swaks command (args) against the demo's
// submission listener, and returns what it printed with that listener's
// address shown as the README's.
func demoSwaks(t *testing.T, d *demo, args []string) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/swaks"); err != nil {
		t.Fatal("swaks is missing: apt-get install -y swaks")
	}
	args = slices.Clone(args)
	args[2] = d.submitAddr
	out, _ := exec.Command("/usr/bin/swaks", args[1:]...).CombinedOutput()
	return strings.ReplaceAll(string(out), d.submitAddr, "127.0.0.1:5587")
}

// linesMissing returns the first line of shown, but for "..." lines,
// that is not a line of out after the line before it; "" if all are.
func linesMissing(out, shown string) string {
	lines := strings.Split(out, "\n")
	i := 0
	for _, want := range strings.Split(strings.TrimSuffix(shown, "\n"), "\n") {
		if want == "..." {
			continue
		}
		for i < len(lines) && strings.TrimRight(lines[i], "\r") != want {
			i++
		}
		if i == len(lines) {
			return want
		}
		i++
	}
	return ""
}

// demoQueue runs `bin/sluice queue ARGS` against the demo's admin listener
// until it prints what the README shows (want) but for the IDs, times,
// sizes and the capture inbox's port, which change from run to run: a
// queued message is tried at once, so its first attempt may not be over
// yet. It returns the last output.
func demoQueue(t *testing.T, bin, adminAddr string, args []string, want string) string {
	t.Helper()
	var out []byte
	for range 300 {
		out, _ = exec.Command(bin, append(append([]string{"queue"}, args...), "-admin", adminAddr)...).CombinedOutput()
		if queueShown(string(out)) == queueShown(want) {
			return string(out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("bin/sluice queue %s printed\n%sthe README shows\n%s", strings.Join(args, " "), out, want)
	return string(out)
}

// queueShown is what `sluice queue` printed, with what changes from run to
// run masked and runs of spaces made one.
func queueShown(s string) string {
	s = queueID.ReplaceAllString(s, "ID")
	s = queueTime.ReplaceAllString(s, "TIME")
	s = queuePort.ReplaceAllString(s, "]:PORT:")
	s = queueSize.ReplaceAllString(s, "SIZE")
	return queueSpaces.ReplaceAllString(s, " ")
}

var (
	queueID     = regexp.MustCompile(`\b[0-9a-f]{20,}\b`)
	queueTime   = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`)
	queuePort   = regexp.MustCompile(`\]:\d+:`)
	queueSize   = regexp.MustCompile(`\b\d{4,}\b`)
	queueSpaces = regexp.MustCompile(` +`)
)

// readInbox reads a message the capture inbox stored, unfolded and with
// "\n" line ends, as a reader compares it with what the README shows.
func readInbox(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "var/inbox", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	return strings.NewReplacer("\n ", " ", "\n\t", " ").Replace(s)
}

// xFields returns the X- fields among the lines the README shows, each on
// one line, unfolded as readInbox unfolds.
func xFields(shown string) []string {
	var out []string
	for _, line := range strings.Split(strings.NewReplacer("\n ", " ", "\n\t", " ").Replace(shown), "\n") {
		if strings.HasPrefix(line, "X-") {
			out = append(out, line)
		}
	}
	return out
}

// receivedFields returns the Received fields among the lines the README
// shows, as patterns for a whole line of readInbox's text: the id and the
// date, which change with each message, match any, as does "..." (text
// the README leaves out).
func receivedFields(shown string) []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, line := range strings.Split(strings.NewReplacer("\n ", " ", "\n\t", " ").Replace(shown), "\n") {
		if strings.HasPrefix(line, "Received: ") {
			p := regexp.QuoteMeta(line)
			p = receivedID.ReplaceAllString(p, " id [0-9a-f]+")
			p = receivedDate.ReplaceAllString(p, "; [^\n]+")
			p = strings.ReplaceAll(p, `\.\.\.`, "[^\n]*")
			out = append(out, regexp.MustCompile("\n"+p+"\n"))
		}
	}
	return out
}

var (
	receivedID   = regexp.MustCompile(` id [0-9a-f]+`)
	receivedDate = regexp.MustCompile(`; [^;]*$`)
)
