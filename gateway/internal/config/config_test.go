package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

var update = flag.Bool("update", false, "rewrite the golden files of bad configurations")

// Each testdata/bad/X.toml must fail with exactly the errors in X.golden.
func TestBadConfigsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configurations found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if err == nil {
				t.Fatal("Load succeeded; want errors")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".toml") + ".golden"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestGoodConfigDefaultsAndNormalisation(t *testing.T) {
	c, err := Load("testdata/good.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mx.example.test" {
		t.Errorf("Hostname = %q, want lower case", c.Hostname)
	}
	if want := []string{"example.test", "xn--bcher-kva.example"}; strings.Join(c.Domains, ",") != strings.Join(want, ",") {
		t.Errorf("Domains = %v, want %v (A-labels)", c.Domains, want)
	}
	if c.SRS.Domain != "example.test" || c.DKIM.Domain != "example.test" {
		t.Errorf("SRS/DKIM domain defaults: %q %q", c.SRS.Domain, c.DKIM.Domain)
	}
	// A key's domain defaults to the gateway's; another is normalised
	// like domains, so that it is found by the From or recipient domain.
	if len(c.DKIM.Keys) != 2 || c.DKIM.Keys[0].Domain != "example.test" || c.DKIM.Keys[1].Domain != "xn--bcher-kva.example" {
		t.Errorf("[[dkim.key]] domains: %+v, want example.test and xn--bcher-kva.example", c.DKIM.Keys)
	}
	if c.DKIM.SignRecipientDomain {
		t.Error("dkim.sign_recipient_domain is on by default")
	}
	if c.SMTP.MaxMessageSize != 25<<20 || c.SMTP.MaxRecipients != 100 || c.SMTP.CommandTimeout.D() != 5*time.Minute {
		t.Errorf("SMTP defaults: %+v", c.SMTP)
	}
	if c.SMTP.MaxErrors != 20 || c.SMTP.MaxHeaderFields != 1000 {
		t.Errorf("max_errors, max_header_fields defaults = %d, %d; want 20, 1000", c.SMTP.MaxErrors, c.SMTP.MaxHeaderFields)
	}
	if c.SMTP.StressTimeout.D() != 10*time.Second {
		t.Errorf("stress_timeout default = %v, want 10s", c.SMTP.StressTimeout.D())
	}
	if c.SMTP.BareLineEndings != "normalize" {
		t.Errorf("bare_line_endings default = %q, want normalize", c.SMTP.BareLineEndings)
	}
	if got := strings.Join(c.SMTP.Listen, " "); got != "0.0.0.0:25 [::]:25" {
		t.Errorf("default listen = %q", got)
	}
	if c.Relay.Helo != "mx.example.test" {
		t.Errorf("relay HELO defaults to hostname, got %q", c.Relay.Helo)
	}
	if c.Relay.TLSSecurity != "may" || !c.RelayMTASTS() {
		t.Errorf("relay tls_security = %q, mta_sts = %v; want may and true by default", c.Relay.TLSSecurity, c.RelayMTASTS())
	}
	if c.Plugin[0].OnFailure != "tempfail" {
		t.Errorf("on_failure default = %q", c.Plugin[0].OnFailure)
	}
	if got := c.Path(c.Plugin[0].Path); got != filepath.Join("testdata", "plugins", "router.wasm") {
		t.Errorf("plugin path resolves to %q, want it relative to the config file", got)
	}
	raw, err := c.Plugin[0].ConfigTOML()
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Sep  string `toml:"subaddress_separator"`
		Rule []struct{ Match, Action, To string }
	}
	if _, err := toml.Decode(string(raw), &back); err != nil {
		t.Fatalf("plugin config is not TOML: %v\n%s", err, raw)
	}
	if back.Sep != "+" || len(back.Rule) != 1 || back.Rule[0].To != "me@example.net" {
		t.Errorf("plugin config round trip lost data: %+v from\n%s", back, raw)
	}
	if got := c.Where("plugin.0.path"); got != "testdata/good.toml:9" {
		t.Errorf("Where(plugin.0.path) = %q", got)
	}
}

// [queue] delay_warning defaults to 4h, and "0s" is never, as the
// README says, not the default.
func TestQueueDelayWarning(t *testing.T) {
	base := "hostname = \"mx.example.test\"\ndomains = [\"example.test\"]\n[srs]\nsecrets = [\"0123456789abcdef0123\"]\n"
	for _, tc := range []struct {
		queue string
		want  time.Duration
	}{
		{"", 4 * time.Hour},
		{"[queue]\ndelay_warning = \"0s\"\n", 0},
		{"[queue]\ndelay_warning = \"30m\"\n", 30 * time.Minute},
	} {
		c, err := Parse("gateway.toml", []byte(base+tc.queue))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Queue.DelayWarning.D(); got != tc.want {
			t.Errorf("%q: delay_warning = %s, want %s", tc.queue, got, tc.want)
		}
	}
}

// The demo configuration at the top of the repository must always load.
func TestDemoConfigLoads(t *testing.T) {
	c, err := Load("../../../gateway.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Plugin) == 0 || c.Dev.InboxListen == "" || len(c.DKIM.Keys) != 2 {
		t.Errorf("demo config lost its plugin, inbox or keys: %+v", c)
	}
}

func TestLineIndex(t *testing.T) {
	src := `a = 1
s = """
fake = 2
"""
[t]
"quoted key" = [
  1,
  2, # x = 3
]
d.e = { f = 1 }
[[arr]]
x = 1
[arr.sub]
y = 2
[[arr]]
x = 'it''s'
`
	idx := indexLines(src)
	want := map[string]int{"a": 1, "s": 2, "t": 5, "t.quoted key": 6, "t.d.e": 10, "arr.0": 11, "arr.0.x": 12, "arr.0.sub": 13, "arr.0.sub.y": 14, "arr.1": 15, "arr.1.x": 16}
	for k, line := range want {
		if idx[k] != line {
			t.Errorf("line of %q = %d, want %d", k, idx[k], line)
		}
	}
	if _, ok := idx["fake"]; ok {
		t.Error("a key inside a multi-line string was indexed")
	}
	if _, ok := idx["t.x"]; ok {
		t.Error("a key inside a comment was indexed")
	}
	if got := idx.lookup("t.d.e.f"); got != 10 {
		t.Errorf("lookup of a key inside an inline table = %d, want its parent's line 10", got)
	}
}

func TestSize(t *testing.T) {
	cases := map[any]Size{int64(1024): 1024, "25MiB": 25 << 20, "10 KB": 10000, "7": 7, "1GiB": 1 << 30}
	for in, want := range cases {
		var s Size
		if err := s.UnmarshalTOML(in); err != nil || s != want {
			t.Errorf("Size(%v) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, bad := range []any{"-1", "1.5MiB", "MiB", int64(-5), 3.2, "99999999999GiB"} {
		var s Size
		if err := s.UnmarshalTOML(bad); err == nil {
			t.Errorf("Size(%v) accepted", bad)
		}
	}
}

// A file that cannot be read is reported as such, with no line number.
func TestLoadUnreadableFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gateway.toml")
	_, err := Load(missing)
	if want := missing + ": no such file"; err == nil || err.Error() != want {
		t.Errorf("Load of a missing file: %v, want %q", err, want)
	}
	dir := t.TempDir()
	_, err = Load(dir)
	if want := dir + ": cannot read the configuration: is a directory"; err == nil || err.Error() != want {
		t.Errorf("Load of a directory: %v, want %q", err, want)
	}
}

// keyError is a plugin's load error naming a setting, as plugin.KeyError.
type keyError string

func (k keyError) Error() string     { return "refused" }
func (k keyError) ConfigKey() string { return string(k) }

// A plugin's error about a setting of its own is placed at that setting's
// line: of the numbered entry when the key has its number, of the first
// entry holding the key when it has none (an unknown key only the entries
// with the typo have), of the entry when the entry lacks the key.
func TestPluginErrorLine(t *testing.T) {
	src := `hostname = "mx.example.test"
domains = ["example.test"]
[srs]
secrets = ["0123456789abcdef0123"]
[[plugin]]
name = "router"
path = "router.wasm"
[[plugin.config.rule]]
match = "a@example.test"
code = 550
[[plugin.config.rule]]
match = "b@example.test"
colour = "red"
[[plugin.config.rule]]
match = "c@example.test"
code = "550"
`
	c, err := Parse("gateway.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{
		"config.rule.2.code":  16, // the SDK's numbered key
		"config.rule.colour":  13,
		"config.rule.1.code":  11, // not in the entry: the entry's line
		"config.rule.0.match": 9,
		"capabilities":        5,
	} {
		if got := c.PluginError(0, keyError(key)); got.Line != want {
			t.Errorf("PluginError at %s: line %d, want %d", key, got.Line, want)
		}
	}
}

// relay.dane defaults to true but takes effect only with [dns] dnssec.
func TestRelayDANE(t *testing.T) {
	base := "hostname = \"mx.example.test\"\ndomains = [\"example.test\"]\n[srs]\nsecrets = [\"0123456789abcdef0123\"]\n"
	cases := []struct {
		extra string
		want  bool
	}{
		{"", false},
		{"[dns]\ndnssec = true\n", true},
		{"[dns]\ndnssec = true\n[relay]\ndane = false\n", false},
		{"[dns]\ndnssec = false\n[relay]\ndane = true\n", false},
	}
	for _, c := range cases {
		cfg, err := Parse("test.toml", []byte(base+c.extra))
		if err != nil {
			t.Fatalf("%q: %v", c.extra, err)
		}
		if got := cfg.RelayDANE(); got != c.want {
			t.Errorf("%q: RelayDANE() = %v, want %v", c.extra, got, c.want)
		}
	}
}

// Once loaded, Relay.Sources is the whole list of outbound addresses, the
// older keys included, each with its EHLO name, and SourceError points at
// the line of each.
func TestRelaySources(t *testing.T) {
	head := `hostname = "mx.example.test"
domains = ["example.test"]
[srs]
secrets = ["0123456789abcdef0123"]
[relay]
helo = "Out.Example.test"
`
	for name, tc := range map[string]struct {
		src   string
		want  []Source
		lines []int
	}{
		"tables": {`[[relay.source]]
address = "2001:DB8::25"
[[relay.source]]
address = "192.0.2.25"
helo = "Four.example.test"
`, []Source{{Address: "2001:db8::25", Helo: "out.example.test"}, {Address: "192.0.2.25", Helo: "four.example.test"}}, []int{8, 10}},
		"older keys": {`source_ipv6 = "2001:db8::25"
source_ipv4 = "192.0.2.25"
`, []Source{{Address: "192.0.2.25", Helo: "out.example.test"}, {Address: "2001:db8::25", Helo: "out.example.test"}}, []int{8, 7}},
		"none": {"", nil, nil},
		// With IPv6 off, the older key's IPv6 address is never used, so
		// it is no source (and sluice dns does not list it).
		"older keys, IPv6 off": {`ipv6 = false
source_ipv6 = "2001:db8::25"
source_ipv4 = "192.0.2.25"
`, []Source{{Address: "192.0.2.25", Helo: "out.example.test"}}, []int{9}},
	} {
		c, err := Parse("gateway.toml", []byte(head+tc.src))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []Source
		for i, s := range c.Relay.Sources {
			got = append(got, Source{Address: s.Address, Helo: s.Helo})
			if line := c.SourceError(i, "x").Line; line != tc.lines[i] {
				t.Errorf("%s: source %d is at line %d, want %d", name, i, line, tc.lines[i])
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: sources %+v, want %+v", name, got, tc.want)
		}
	}
}
