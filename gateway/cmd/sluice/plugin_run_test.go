package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// pluginTestRun runs sluice plugin test with the tests' host settings.
func pluginTestRun(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	args = append([]string{"plugin", "test"}, args...)
	args = append(args, "-cache-dir", wasmbuild.CacheDirForTest(), "-dns-server", "127.0.0.1:9")
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A whole session through the scripted test plugin, which answers at every
// stage: each stage in order, with what the gateway would send.
func TestPluginTestRunsEveryStageInOrder(t *testing.T) {
	wasm := wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted")
	cfg := writeFile(t, "s.toml", "verdict = \"continue\"\nheader = \"X-Seen: yes\"\nfinding = \"SEEN\"\npermit = [\"add_headers\"]\n")
	code, out, errOut := pluginTestRun(t, "", wasm, "--config", cfg, "--from", "a@example.org",
		"--rcpt", "b@example.test", "--rcpt", "c@example.test", "--ip", "2001:db8::1")
	want := strings.Join([]string{
		"connect: continue; add header X-Seen: yes; finding SEEN 1.5",
		"helo: continue; add header X-Seen: yes; finding SEEN 1.5",
		"mail: continue; add header X-Seen: yes; finding SEEN 1.5",
		"rcpt <b@example.test>: continue; add header X-Seen: yes; finding SEEN 1.5",
		"rcpt <c@example.test>: continue; add header X-Seen: yes; finding SEEN 1.5",
		"data: continue; add header X-Seen: yes; finding SEEN 1.5",
		"close: told",
	}, "\n") + "\n"
	if code != exitPassed || out != want {
		t.Errorf("exit %d, printed\n%s(stderr %s)\nwant\n%s", code, out, errOut, want)
	}
}

// A refused stage ends the session as the gateway would: refused
// recipients are left out, and with none left there is no data stage.
func TestPluginTestRefusals(t *testing.T) {
	wasm := wasmbuild.ForTest(t, "./plugins/router")
	cfg := writeFile(t, "router.toml", routerConfig)
	code, out, _ := pluginTestRun(t, "", wasm, "--config", cfg, "--rcpt", "old@example.test", "--rcpt", "INFO+x@example.test")
	want := "rcpt <old@example.test>: reject 550 5.1.1 This address is no longer in use\n" +
		"rcpt <INFO+x@example.test>: continue; destination me@inbox.test\n"
	if code != exitRefused || out != want {
		t.Errorf("exit %d, printed\n%s", code, out)
	}

	scripted := wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted")
	cfg = writeFile(t, "s.toml", "verdict = \"reject\"\ncode = 554\ntext = \"go away\"\npermit = [\"reject\"]\n")
	code, out, _ = pluginTestRun(t, "", scripted, "--config", cfg, "--rcpt", "b@example.test")
	if want := "connect: reject 554 5.7.1 go away\nclose: told\n"; code != exitRefused || out != want {
		t.Errorf("refused connect: exit %d, printed\n%s", code, out)
	}
}

// A failure of the plugin is printed with the gateway's on_failure reply,
// and counts as a refusal.
func TestPluginTestFailure(t *testing.T) {
	scripted := wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted")
	cfg := writeFile(t, "s.toml", `verdict = "accept"`)
	code, out, _ := pluginTestRun(t, "", scripted, "--config", cfg, "--name", "acc")
	if !strings.HasPrefix(out, "connect: failed: bad output: verdict accept is outside the permissions it declared; on_failure tempfail: 451 4.3.0 Filter acc failed, try again later\n") || code != exitRefused {
		t.Errorf("exit %d, printed\n%s", code, out)
	}
	code, out, _ = pluginTestRun(t, "", scripted, "--rcpt", "panic@example.test", "--name", "p")
	if !strings.Contains(out, "rcpt <panic@example.test>: failed: panicked at rcpt: scripted panic; on_failure tempfail") || code != exitRefused {
		t.Errorf("panic: exit %d, printed\n%s", code, out)
	}
}

// The data stage reads the message from --eml or stdin, with the host
// functions of the capabilities granted.
func TestPluginTestMessage(t *testing.T) {
	wasm := buildExample(t, "examples/subjecttag")
	cfg := writeFile(t, "tags.toml", "[[rule]]\ntag = \"[T]\"\n")
	msg := "Subject: hello\nFrom: a@example.org\n\nbody\n"
	code, out, _ := pluginTestRun(t, msg, wasm, "--config", cfg, "--eml", "-")
	if want := "data: continue; remove header Subject; add header Subject: [T] hello\n"; code != exitPassed || out != want {
		t.Errorf("stdin: exit %d, printed %q", code, out)
	}
	eml := writeFile(t, "m.eml", "Subject: from a file\r\n\r\n")
	if _, out, _ := pluginTestRun(t, "", wasm, "--config", cfg, "--eml", eml); !strings.Contains(out, "[T] from a file") {
		t.Errorf("--eml: printed %q", out)
	}
	// Without --eml, a short message made from the envelope.
	if _, out, _ := pluginTestRun(t, "", wasm, "--config", cfg); !strings.Contains(out, "Subject: [T] test") {
		t.Errorf("no --eml: printed %q", out)
	}
	// Without the headers capability the host refuses to load it.
	code, _, errOut := pluginTestRun(t, "", wasm, "--config", cfg, "--capabilities", "body,kv")
	if code != exitError || !strings.Contains(errOut, `capabilities does not grant "headers"`) {
		t.Errorf("no headers: exit %d, %s", code, errOut)
	}
}

func TestPluginTestAuth(t *testing.T) {
	a, err := parseAuth("spf=pass, dkim=fail,dkim=pass,arc=none,dmarc=fail,dmarc.policy=reject")
	if err != nil {
		t.Fatal(err)
	}
	if a.SPF.Result != "pass" || len(a.DKIM) != 2 || a.DKIM[1].Result != "pass" || a.ARC.Result != "none" ||
		a.DMARC.Result != "fail" || a.DMARC.Policy != "reject" || a.DMARC.Pct != 100 {
		t.Errorf("parsed %+v", a)
	}
	for _, bad := range []string{"dmarc", "dmarc=", "dkim.selector=x"} {
		if _, err := parseAuth(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	// The dmarc plugin acts on what -auth says.
	wasm := buildExample(t, "plugins/dmarc")
	code, out, _ := pluginTestRun(t, "", wasm, "--auth", "dmarc=fail,dmarc.policy=reject", "--rcpt", "me@example.test")
	if code != exitRefused || !strings.HasPrefix(out, "data: reject 550 5.7.1 ") {
		t.Errorf("dmarc fail: exit %d, printed %q", code, out)
	}
	if code, out, _ := pluginTestRun(t, "", wasm, "--auth", "dmarc=pass"); code != exitPassed || out != "data: continue\n" {
		t.Errorf("dmarc pass: exit %d, printed %q", code, out)
	}
}

func TestPluginTestUsageErrors(t *testing.T) {
	wasm := wasmbuild.ForTest(t, "./plugins/router")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "usage: sluice plugin test"},
		{[]string{wasm, wasm}, "usage: sluice plugin test"},
		{[]string{filepath.Join(t.TempDir(), "none.wasm")}, "no such file"},
		{[]string{wasm, "--config", "/nonexistent.toml"}, "no such file"},
		{[]string{wasm, "--capabilities", "headers,telepathy"}, `"telepathy" is not one of`},
		{[]string{wasm, "--auth", "x=y"}, "unknown key"},
		{[]string{wasm, "--config", writeFile(t, "bad.toml", "[[rule]]\nmatch = 1\n")}, "config refused"},
	} {
		code, _, errOut := pluginTestRun(t, "", c.args...)
		if code != exitError || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errOut, c.want)
		}
	}
}

func TestPluginCommandUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"plugin"}, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "new    NAME") {
		t.Errorf("sluice plugin: exit %d, %s", code, errOut.String())
	}
	if code := run(context.Background(), []string{"plugin", "frobnicate"}, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("sluice plugin frobnicate: exit %d", code)
	}
}

// --user runs the session as the submission service would for a user
// logged in: every request from mail on names the user.
func TestPluginTestUser(t *testing.T) {
	wasm := wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted")
	cfg := writeFile(t, "scripted.toml", "permit = [\"add_headers\"]\nheader = \"X-User: [{authenticated_user}]\"\n")
	code, out, errOut := pluginTestRun(t, "", wasm, "--config", cfg, "--user", "alice")
	for _, want := range []string{"helo: continue; add header X-User: []", "mail: continue; add header X-User: [alice]",
		"data: continue; add header X-User: [alice]"} {
		if code != exitPassed || !strings.Contains(out, want+"\n") {
			t.Errorf("--user alice: exit %d, printed %q%s; want a line %q", code, out, errOut, want)
		}
	}
	if _, out, _ := pluginTestRun(t, "", wasm, "--config", cfg); !strings.Contains(out, "mail: continue; add header X-User: []\n") {
		t.Errorf("without --user: printed %q, want no user", out)
	}
}
