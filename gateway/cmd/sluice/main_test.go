package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

var update = flag.Bool("update", false, "rewrite golden files")

// checkDir makes a directory holding a testdata configuration with what it
// refers to: the router plugin (and examples/subjecttag where it is named),
// built from source, and a DKIM key.
func checkDir(t *testing.T, name string) (dir, cfg string) {
	t.Helper()
	dir = t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "check", name))
	if err != nil {
		t.Fatal(err)
	}
	src = bytes.ReplaceAll(src, []byte("@CACHE@"), []byte(wasmbuild.CacheDirForTest()))
	cfg = filepath.Join(dir, name)
	if err := os.WriteFile(cfg, src, 0o644); err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(wasmbuild.ForTest(t, "./plugins/router"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "router.wasm"), wasm, 0o644)
	if bytes.Contains(src, []byte("subjecttag.wasm")) { // a plugin that needs the headers capability
		wasm, err := os.ReadFile(wasmbuild.ForTest(t, "./examples/subjecttag"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "subjecttag.wasm"), wasm, 0o644)
	}
	os.Mkdir(filepath.Join(dir, "keys"), 0o755)
	if out := run(context.Background(), []string{"keygen", "-out", filepath.Join(dir, "keys", "rsa.pem"), "-bits", "1024"}, nil, &bytes.Buffer{}, &bytes.Buffer{}); out != 0 {
		t.Fatal("keygen failed")
	}
	return dir, cfg
}

// Every testdata/check/X.toml but ok.toml fails `sluice check` with exactly
// the errors in X.golden (the temporary directory written as TMP).
func TestCheckGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/check/*.toml")
	if len(files) < 5 {
		t.Fatalf("too few cases: %v", files)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			dir, cfg := checkDir(t, name)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"check", "-c", cfg}, nil, &stdout, &stderr)
			if name == "ok.toml" {
				// Each plugin with where it runs, then OK.
				want := "plugin router: services mx; stages rcpt\nplugin outbound: services mx, submission; stages rcpt\n" + cfg + ": OK\n"
				if code != 0 || stdout.String() != want {
					t.Fatalf("check of a good config: exit %d, %s%s; want %s", code, stdout.String(), stderr.String(), want)
				}
				return
			}
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			got := strings.ReplaceAll(stderr.String(), dir, "TMP")
			golden := strings.TrimSuffix(f, ".toml") + ".golden"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, _ := os.ReadFile(golden)
			if got != string(want) {
				t.Errorf("sluice check said:\n%s\nwant (%s):\n%s", got, golden, want)
			}
		})
	}
}

func TestKeygenPrintsTheRecordOfTheKeyItWrote(t *testing.T) {
	for _, alg := range []string{"rsa", "ed25519"} {
		out := filepath.Join(t.TempDir(), "k.pem")
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"keygen", "-algorithm", alg, "-selector", "s1", "-domain", "example.test", "-out", out}, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("keygen %s: exit %d: %s", alg, code, stderr.String())
		}
		key, err := dkim.LoadKey(out)
		if err != nil {
			t.Fatal(err)
		}
		txt, _ := dkim.TXTRecord(key)
		line := stdout.String()
		if !strings.HasPrefix(line, "s1._domainkey.example.test. IN TXT \"") || strings.ReplaceAll(strings.ReplaceAll(line[strings.Index(line, `"`):], `" "`, ""), `"`, "") != txt+"\n" {
			t.Errorf("printed %q, want the record for %s", line, txt)
		}
		if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
		}
		if code := run(context.Background(), []string{"keygen", "-out", out}, nil, &stdout, &stderr); code == 0 {
			t.Error("keygen overwrote an existing key without -force")
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown command "frobnicate"`) {
		t.Errorf("exit %d, %q", code, stderr.String())
	}
}

// A configuration file that is not there is reported as such.
func TestCheckMissingConfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gateway.toml")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check", "-c", missing}, nil, &stdout, &stderr); code != 1 || stderr.String() != missing+": no such file\n" {
		t.Errorf("exit %d, printed %q", code, stderr.String())
	}
}

// serve refuses what check refuses: a plugin that imports a host function
// it was not granted would filter nothing, so it is a load error there
// too, not a silent no-op.
func TestServeRefusesUngrantedImports(t *testing.T) {
	serveRefuses(t, "plugin-ungranted.toml", `plugin tagger: it imports sluice.header_get but capabilities does not grant "headers": add capabilities = ["headers"]`)
}

// serveRefuses checks that serve, with the check case file listening on
// loopback, exits 1 and prints want.
func serveRefuses(t *testing.T, file, want string) {
	t.Helper()
	_, cfg := checkDir(t, file)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("[smtp]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"\"\n")
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"serve", "-c", cfg}, nil, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), want) {
		t.Errorf("serve: exit %d, printed\n%s\nwant exit 1 and %q", code, stderr.String(), want)
	}
}

// serve refuses to start with an outbound address that is not on the
// machine, saying what check says: otherwise every connection from it
// would fail.
func TestServeRefusesSourceNotHere(t *testing.T) {
	serveRefuses(t, "relay-source-not-here.toml", `relay-source-not-here.toml:13: relay.source[1].address: 192.0.2.25 is not an address of this machine`)
}
