package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// testHost is how the tests run plugins: the shared compilation cache, and
// DNS lookups to a loopback port where nothing answers.
func testHost(config string) *hostFlags {
	var h hostFlags
	h.register(flag.NewFlagSet("test", flag.ContinueOnError)) // the defaults
	h.configText, h.cacheDir, h.dnsServer = []byte(config), wasmbuild.CacheDirForTest(), "127.0.0.1:9"
	h.httpHosts = listFlag{"127.0.0.1:9"} // discard: nothing answers there
	return &h
}

// conform runs the conformance checks on a module and returns the report.
func conform(t *testing.T, wasm, config string) *checkReport {
	t.Helper()
	r := checkConformance(context.Background(), wasm, testHost(config), io.Discard)
	var b bytes.Buffer
	r.write(&b)
	t.Logf("%s", b.String())
	return r
}

const routerConfig = `
subaddress_separator = "+"
[[rule]]
match = "info@example.test"
action = "forward"
to = "me@inbox.test"
[[rule]]
match = "old@example.test"
action = "reject"
code = 550
enhanced = "5.1.1"
text = "This address is no longer in use"
`

// Every first-party plugin and every example passes every check, with no
// warning.
func TestConformanceOfPluginsAndExamples(t *testing.T) {
	// Every plugin under plugins/, with a config where it needs one.
	targets := map[string]string{}
	plugins, _ := filepath.Glob(filepath.Join(moduleRoot, "plugins", "*", "main.go"))
	for _, p := range plugins {
		targets[filepath.Join("plugins", filepath.Base(filepath.Dir(p)))] = ""
	}
	targets["plugins/router"] = routerConfig
	targets["plugins/dmarc"] = `trusted_arc_sealers = ["lists.example.org"]`
	targets["plugins/fromrewrite"] = "domain = \"example.test\"\nsecret = \"conformance-secret-0123\"\n"
	targets["plugins/dnsbl"] = "[[zone]]\nname = \"bl.example\"\n"
	targets["plugins/rspamd"] = `url = "http://127.0.0.1:9"`
	targets["plugins/ratelimit"] = "[[limit]]\ncount = \"client\"\nmax = 100\nper = \"1h\"\n"
	// Every example, with the first config file its README's examples use.
	for _, folder := range examples(t) {
		ex := readReadme(t, filepath.Join(moduleRoot, folder, "README.md"))
		config := ""
		for _, c := range ex.commands {
			for i, a := range c.args {
				if a == "--config" && i+1 < len(c.args) && config == "" {
					config = ex.files[c.args[i+1]]
				}
			}
		}
		targets[folder] = config
	}
	for folder, config := range targets {
		t.Run(folder, func(t *testing.T) {
			r := conform(t, buildExample(t, folder), config)
			want := []string{"module", "capabilities", "configure", "strict", "determinism", "memory"}
			for _, name := range want {
				it, ok := r.Item(name)
				if !ok || it.Status != checkOK {
					t.Errorf("check %s: %+v, want ok", name, it)
				}
			}
			stages := 0
			for _, it := range r.Items {
				if it.Status != checkOK {
					t.Errorf("check %s: %s %s", it.Name, it.Status, it.Detail)
				}
				if strings.Contains(it.Detail, "formats; edge cases") {
					stages++
				}
			}
			if stages == 0 {
				t.Error("no stage was checked")
			}
		})
	}
}

// The kit finds what breaks the ABI in modules built to break it.
func TestConformanceFindsBrokenPlugins(t *testing.T) {
	cases := []struct {
		pkg, config, check string
		status             checkStatus
		detail             string
	}{
		{"./gateway/internal/plugin/testdata/nomarker", "", "module", checkFail, "imports no sluice.abi_version_1"},
		{"./gateway/internal/plugin/testdata/abi2", "", "module", checkFail, "the marker of another ABI version"},
		{"./plugins/router", `[[rule]]` + "\nmatch = \"x\"\n", "configure", checkFail, "config refused"},
		// Rejects without declaring it.
		{"./gateway/internal/plugin/testdata/scripted", `verdict = "reject"`, "mail", checkFail, "outside the permissions it declared"},
		// Traps on requests of other minor versions.
		{"./gateway/cmd/sluice/testdata/plugincheck/strict", "", "mail", checkFail, "older format (no Auth fields): trapped"},
		{"./gateway/cmd/sluice/testdata/plugincheck/leaky", "", "memory", checkFail, ""},
		{"./gateway/cmd/sluice/testdata/plugincheck/stateful", "", "determinism", checkWarn, "answers differ between instances"},
		// Answers with the wall-clock time: the check runs at one instant,
		// so the clock ticking between instances is not a difference.
		{"./gateway/cmd/sluice/testdata/plugincheck/clock", "", "determinism", checkOK, "a second instance gave the same"},
		{"./gateway/internal/plugin/testdata/scripted", "", "strict", checkOK, "unknown setting"},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.pkg)+"/"+c.check, func(t *testing.T) {
			r := conform(t, wasmbuild.ForTest(t, c.pkg), c.config)
			it, ok := r.Item(c.check)
			if !ok || it.Status != c.status || !strings.Contains(it.Detail, c.detail) {
				t.Errorf("check %s: %+v, want %s with %q", c.check, it, c.status, c.detail)
			}
			if r.Failed() != (c.status == checkFail) {
				t.Errorf("Failed() = %v", r.Failed())
			}
		})
	}
}

// sluice plugin check prints the report and says in its exit status
// whether a check failed.
func TestPluginCheckCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "router.toml")
	os.WriteFile(cfg, []byte(routerConfig), 0o644)
	good := wasmbuild.ForTest(t, "./plugins/router")
	bad := wasmbuild.ForTest(t, "./gateway/cmd/sluice/testdata/plugincheck/strict")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"plugin", "check", good, "-config", cfg, "-cache-dir", wasmbuild.CacheDirForTest()}, nil, &stdout, &stderr)
	if code != exitPassed || !strings.HasSuffix(stdout.String(), "PASS: 0 failed, 0 warnings, 7 checks\n") {
		t.Errorf("router: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	code = run(context.Background(), []string{"plugin", "check", bad, good, "-config", cfg, "-cache-dir", wasmbuild.CacheDirForTest()}, nil, &stdout, &stderr)
	if code != exitRefused || strings.Count(stdout.String(), "FAIL:") != 1 || strings.Count(stdout.String(), "PASS:") != 1 {
		t.Errorf("strict and router: exit %d\n%s", code, stdout.String())
	}
	if code := run(context.Background(), []string{"plugin", "check"}, nil, &stdout, &stderr); code != exitError {
		t.Errorf("no module: exit %d, want %d", code, exitError)
	}
}
