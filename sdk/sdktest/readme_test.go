package sdktest

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

const readme = "# probe\n" + // 1
	"\n" +
	"| a table before any block | is not an example's |\n" +
	"|---|---|\n" +
	"| x | y |\n" + // 5
	"\n" +
	"```toml\n" +
	"[[plugin]]\n" +
	"name = \"probe\"\n" +
	"[plugin.config]\n" + // 10
	"refuse = [\"spam@example.test\"]\n" +
	"```\n" +
	"\n" +
	"| sender | result |\n" +
	"|:---|---:|\n" + // 15
	"| spam@example.test | reject 550 5.7.1 refused |\n" +
	"|  friend@example.test|continue  |\n" +
	"\n" +
	"```sh\n" +
	"# a comment in a shell block is no heading\n" + // 20
	"| nor is this a table\n" +
	"```\n" +
	"\n" +
	"| sender | result |\n" +
	"|---|---|\n" + // 25
	"| <> | continue |\n" +
	"\n" +
	"## Next section\n" +
	"\n" +
	"| sender | result |\n" + // 30
	"|---|---|\n" +
	"| late@example.test | not the block's |\n" +
	"\n" +
	"```toml\n" +
	"# probe.toml\n" + // 35
	"refuse = []\n" +
	"```\n"

func writeReadme(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each toml block gets the rows of the tables after it in its section,
// without header or separator, with their lines; shell blocks are not
// headings or tables.
func TestReadmeExamples(t *testing.T) {
	path := writeReadme(t, readme)
	got := ReadmeExamples(t, path)
	want := []Example{
		{File: path, Line: 7, TOML: "[[plugin]]\nname = \"probe\"\n[plugin.config]\nrefuse = [\"spam@example.test\"]\n", Rows: []Row{
			{16, []string{"spam@example.test", "reject 550 5.7.1 refused"}},
			{17, []string{"friend@example.test", "continue"}},
			{26, []string{"<>", "continue"}},
		}},
		{File: path, Line: 34, TOML: "# probe.toml\nrefuse = []\n"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// The config an example gives a plugin configures it as gateway.toml
// would.
func TestPluginConfig(t *testing.T) {
	e := ReadmeExamples(t, writeReadme(t, readme))[0]
	config := e.PluginConfig(t, "probe")
	if config != "refuse = [\"spam@example.test\"]\n" {
		t.Errorf("config %q", config)
	}
	p := New(t, &probe{}, config)
	v := p.Handle(t, &sdk.Request{Stage: abi.StageMail, MailFrom: "spam@example.test"})
	if v.Action != abi.Reject {
		t.Errorf("the README's config does not refuse its sender: %s", Describe(v))
	}
}

func TestPluginConfigRefused(t *testing.T) {
	for _, c := range []struct {
		toml, want string
	}{
		{"[[plugin]]\nname = \"other\"\n", "README.md:3: want one [[plugin]] named probe"},
		{"[[plugin]]\nname = \"probe\"\n[[plugin]]\nname = \"probe\"\n", "README.md:3: want one [[plugin]] named probe"},
		{"refuse = []\n", "README.md:3: want one [[plugin]] named probe"},
		{"[[plugin]\n", "README.md:3: "},
	} {
		_, err := Example{File: "README.md", Line: 3, TOML: c.toml}.pluginConfig("probe")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.toml, err, c.want)
		}
	}
}

func TestReadmeTableRefused(t *testing.T) {
	for _, c := range []struct {
		table, want string
	}{
		{"| a | b |\n|---|---|\n| 1 | 2 | 3 |\n", "README.md:5: the row has 3 cells, its table's header 2"},
		{"| a | b |\n|---|---|\n| 1 |\n", "README.md:5: the row has 1 cells, its table's header 2"},
		{"| a | b |\n| 1 | 2 |\n", "README.md:4: a table's second row must be its separator, |---|"},
	} {
		_, err := readExamples("README.md", strings.NewReader("```toml\n```\n"+c.table))
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: error %v, want %q", c.table, err, c.want)
		}
	}
}

// runReadme is a README with an example that configures the probe, its
// rows, and an example that does not configure.
const runReadme = "```toml\n" + // 1
	"[[plugin]]\n" +
	"name = \"probe\"\n" +
	"[plugin.config]\n" +
	"refuse = [\"spam@example.test\"]\n" + // 5
	"```\n" +
	"\n" +
	"| sender | result |\n" +
	"|---|---|\n" +
	"| spam@example.test | reject 550 5.7.1 refused spam@example.test |\n" + // 10
	"| friend@example.test | reject 550 5.7.1 not so |\n" +
	"\n" +
	"```toml\n" +
	"[[plugin]]\n" +
	"name = \"probe\"\n" + // 15
	"[plugin.config]\n" +
	"refuse = \"one\"\n" +
	"```\n" +
	"\n" +
	"| sender | result |\n" + // 20
	"|---|---|\n" +
	"| never@example.test | run |\n"

// failures is a testing.TB that keeps what a test reports; Fatal ends the
// goroutine, as it does a test's.
type failures struct {
	testing.TB
	got []string
}

func (f *failures) Helper() {}
func (f *failures) Errorf(format string, args ...any) {
	f.got = append(f.got, fmt.Sprintf(format, args...))
}
func (f *failures) Fatalf(format string, args ...any) { f.Errorf(format, args...); runtime.Goexit() }
func (f *failures) Fatal(args ...any)                 { f.got = append(f.got, fmt.Sprint(args...)); runtime.Goexit() }

// Run configures the plugin with each example, answers each row of the
// examples that configure, and reports a row whose answer differs, an
// example that does not configure, and a README with fewer examples, rows
// or cells than asked.
func TestReadmeTestRun(t *testing.T) {
	path := writeReadme(t, runReadme)
	for _, c := range []struct {
		rt   ReadmeTest
		rows int
		want []string
	}{
		{ReadmeTest{Path: path, Plugin: "probe", Examples: 2, Rows: 2, Cells: 2}, 2, []string{
			path + ":11: the plugin answers\n\t\"continue\"\nthe README says\n\t\"reject 550 5.7.1 not so\"",
			path + ":13: does not configure: ",
		}},
		{ReadmeTest{Path: path, Plugin: "probe", Examples: 3}, 0, []string{
			"found 2 toml blocks in " + path + ", want at least 3",
		}},
		{ReadmeTest{Path: path, Plugin: "probe", Rows: 3}, 2, []string{
			path + ":11: the plugin answers",
			path + ":13: does not configure: ",
			"checked 2 rows of " + path + ", want at least 3",
		}},
		{ReadmeTest{Path: path, Plugin: "probe", Cells: 3}, 0, []string{
			path + ":10: an example row needs 3 cells",
		}},
	} {
		f := &failures{}
		rows := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.rt.Run(f, func(config string) (func(Row) (string, string), error) {
				p, err := Configure(&probe{}, config)
				return func(r Row) (string, string) {
					rows++
					v := p.Handle(t, &sdk.Request{Stage: abi.StageMail, MailFrom: r.Cells[0]})
					return Describe(v), r.Cells[1]
				}, err
			})
		}()
		<-done
		if rows != c.rows {
			t.Errorf("%+v: %d rows answered, want %d", c.rt, rows, c.rows)
		}
		if len(f.got) != len(c.want) {
			t.Errorf("%+v: reported %q, want %q", c.rt, f.got, c.want)
			continue
		}
		for i := range c.want {
			if !strings.HasPrefix(f.got[i], c.want[i]) {
				t.Errorf("%+v: reported %q, want it to begin %q", c.rt, f.got[i], c.want[i])
			}
		}
	}
}
