package sdktest

import (
	"os"
	"path/filepath"
	"reflect"
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
