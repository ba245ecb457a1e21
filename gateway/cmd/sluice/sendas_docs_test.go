package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// docs/send-as.md as an operator follows it, with the real binary: its
// keygen command makes my-company.example's key; its ```toml blocks (the
// [submission] with a hash from `sluice passwd` for its "...", the
// domain's [[dkim.key]], the outbound rate limit) added to a
// configuration of the gateway the doc describes pass `sluice check`; and
// `sluice dns` prints the my-company.example section the doc shows, but
// for the key itself.
func TestSendAsDocs(t *testing.T) {
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	doc := readDocBlocks(t, filepath.Join(moduleRoot, "docs", "send-as.md"))
	// /var/lib/sluice, the doc's state directory, is dir here.
	local := strings.NewReplacer("/var/lib/sluice/", dir+"/")

	var keygen []string
	for _, line := range doc["sh"] {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "sudo -u sluice sluice keygen "); ok {
			keygen = strings.Fields(local.Replace(rest))
		}
	}
	if keygen == nil {
		t.Fatal("docs/send-as.md no longer shows `sudo -u sluice sluice keygen` for the domain's key; update this test")
	}
	if _, code := runSluice(t, bin, append([]string{"keygen"}, keygen...)...); code != 0 {
		t.Fatalf("sluice keygen %v: exit %d", keygen, code)
	}
	// The gateway's own key, as README's Going live makes it.
	if _, code := runSluice(t, bin, "keygen", "-selector", "sluice", "-domain", "example.com", "-out", filepath.Join(dir, "keys", "sluice.pem")); code != 0 {
		t.Fatalf("sluice keygen for example.com: exit %d", code)
	}
	writeTestCert(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))

	// The gateway the doc describes: mx.example.com signing for
	// example.com, serving my-company.example too.
	base := fmt.Sprintf(`hostname = "mx.example.com"
domains = ["example.com", "my-company.example"]
data_dir = %[1]q

[smtp]
listen = ["127.0.0.1:0"]
tls_cert = %[2]q
tls_key = %[3]q

[srs]
secrets = ["0123456789abcdef0123"]

[dkim]
domain = "example.com"
[[dkim.key]]
selector = "sluice"
file = %[4]q

[records]
report_address = "postmaster@example.com"

[wasm]
cache_dir = %[5]q
`, dir, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "keys", "sluice.pem"), wasmbuild.CacheDirForTest())

	blocks := doc["toml"]
	if len(blocks) < 3 {
		t.Fatalf("docs/send-as.md has %d ```toml blocks, want the [submission], the [[dkim.key]] and the plugin; update this test", len(blocks))
	}
	hash := passwdHash(t, bin, "send-as-docs")
	cfg := base
	for _, b := range blocks {
		b = strings.ReplaceAll(b, `"$argon2id$v=19$m=65536,t=3,p=4$..."`, fmt.Sprintf("%q", hash))
		b = strings.ReplaceAll(b, `path = "plugins/ratelimit/ratelimit.wasm"`, fmt.Sprintf("path = %q", wasmbuild.ForTest(t, "./plugins/ratelimit")))
		cfg += "\n" + local.Replace(b)
	}
	cfgPath := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := runSluice(t, bin, "check", "-c", cfgPath); code != 0 || !strings.HasSuffix(out, cfgPath+": OK\n") {
		t.Fatalf("sluice check of docs/send-as.md's configuration: exit %d\n%s\nconfiguration:\n%s", code, out, cfg)
	}

	// `sluice dns` with the doc's outbound addresses, which are not this
	// machine's (so not for check).
	withSources := cfg + `
[[relay.source]]
address = "203.0.113.25"
helo = "mx.example.com"
[[relay.source]]
address = "2001:db8::25"
helo = "mx.example.com"
`
	if err := os.WriteFile(cfgPath, []byte(withSources), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runSluice(t, bin, "dns", "-c", cfgPath)
	if code != 0 {
		t.Fatalf("sluice dns: exit %d\n%s", code, out)
	}
	var shown []string
	for _, b := range doc[""] {
		if strings.HasPrefix(b, "; my-company.example\n") {
			shown = strings.Split(strings.TrimSuffix(b, "\n"), "\n")
		}
	}
	if len(shown) < 5 || shown[len(shown)-1] != "..." {
		t.Fatalf("docs/send-as.md no longer shows `sluice dns`'s my-company.example section ending in ...; update this test")
	}
	shown = shown[:len(shown)-1]
	_, printed, _ := strings.Cut(out, "\n; my-company.example\n")
	got := strings.Split("; my-company.example\n"+printed, "\n")
	for i, want := range shown {
		if i >= len(got) || dkimKey.ReplaceAllString(got[i], "p=KEY") != dkimKey.ReplaceAllString(want, "p=KEY") {
			t.Errorf("docs/send-as.md shows, as line %d of sluice dns's my-company.example section,\n%s\nsluice dns prints\n%s", i+1, want, strings.Join(got, "\n"))
			break
		}
	}
}

// dkimKey is the key in a DKIM record as sluice dns prints it, or as a
// doc shortens it ("p=MIIB...(255 bytes)" "...IDAQAB").
var dkimKey = regexp.MustCompile(`p=[^"]*"(?: "[^"]*")*`)

// readDocBlocks returns a Markdown file's fenced blocks by their info
// string ("toml", "sh", "" for a bare ```), each block's text with its
// line ends.
func readDocBlocks(t *testing.T, path string) map[string][]string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string][]string{}
	var info string
	var body strings.Builder
	in := false
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case !in && strings.HasPrefix(trimmed, "```"):
			in, info = true, strings.TrimPrefix(trimmed, "```")
			body.Reset()
		case in && trimmed == "```":
			in = false
			blocks[info] = append(blocks[info], body.String())
		case in:
			// Blocks inside a list item are indented.
			body.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "  "), "  ") + "\n")
		}
	}
	return blocks
}
