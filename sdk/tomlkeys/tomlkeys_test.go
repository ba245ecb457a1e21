package tomlkeys

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

type settings struct {
	Name  string `toml:"name"`
	Rule  []rule `toml:"rule"`
	Group []struct {
		Member []rule `toml:"member"`
	} `toml:"group"`
	Limits  *limits
	Skipped string `toml:"-"`
	embedded
	hidden string
}

type rule struct {
	Match string `toml:"match"`
	Code  int    `toml:"code"`
}

type limits struct{ MaxSize int }

type embedded struct {
	Extra bool `toml:"extra"`
}

// The entry a type error is in is found for every array of tables on the
// key's path, whether written as [[sections]] or as inline tables, and
// whatever else is wrong elsewhere.
func TestEntry(t *testing.T) {
	cases := []struct{ src, want string }{
		{"[[rule]]\ncode = 1\n[[rule]]\ncode = 2\n[[rule]]\ncode = \"3\"\n[[rule]]\ncode = \"4\"\n", "rule.2.code"},
		{"[[rule]]\ncode = \"1\"\n[[rule]]\ncode = \"2\"\n", "rule.0.code"},
		{"rule = [{code = 1}, {match = 5}]\n", "rule.1.match"},
		{"[[group]]\n[[group.member]]\ncode = 1\n[[group]]\n[[group.member]]\ncode = 2\n[[group.member]]\ncode = \"x\"\n", "group.1.member.1.code"},
		{"name = 5\n[[rule]]\ncode = 1\n", "name"},
	}
	for _, c := range cases {
		var s settings
		_, err := toml.Decode(c.src, &s)
		if err == nil {
			t.Fatalf("%q decoded", c.src)
		}
		key := lastKey(t, err)
		if got := strings.Join(Entry(c.src, reflect.TypeFor[settings](), key), "."); got != c.want {
			t.Errorf("Entry(%q) = %s, want %s", c.src, got, c.want)
		}
	}
	// What cannot be placed is left as it was.
	if got := Entry("not = [toml", reflect.TypeFor[settings](), []string{"rule", "code"}); !slices.Equal(got, []string{"rule", "code"}) {
		t.Errorf("Entry of a syntax error = %q", got)
	}
}

// lastKey is the key toml's type error names: toml: line N (last key "k"): ...
func lastKey(t *testing.T, err error) []string {
	t.Helper()
	_, rest, ok := strings.Cut(err.Error(), `(last key "`)
	key, _, ok2 := strings.Cut(rest, `")`)
	if !ok || !ok2 {
		t.Fatalf("no key in %q", err)
	}
	return strings.Split(key, ".")
}

func TestString(t *testing.T) {
	for path, want := range map[string]string{"plugin.0.name": "plugin[0].name", "rule.3.code": "rule[3].code", "name": "name", "a.1.b.2": "a[1].b[2]"} {
		if got := String(strings.Split(path, ".")); got != want {
			t.Errorf("String(%s) = %s, want %s", path, got, want)
		}
	}
}

func TestTypeAndNames(t *testing.T) {
	st := reflect.TypeFor[settings]()
	for path, want := range map[string]reflect.Type{
		"name": reflect.TypeFor[string](), "rule.2.code": reflect.TypeFor[int](), "rule": reflect.TypeFor[[]rule](),
		"limits.maxsize": reflect.TypeFor[int](), "Limits.MaxSize": reflect.TypeFor[int](), "extra": reflect.TypeFor[bool](),
	} {
		if got, ok := Type(st, strings.Split(path, ".")); !ok || got != want {
			t.Errorf("Type(%s) = %v, %v; want %v", path, got, ok, want)
		}
	}
	for _, path := range []string{"nosuch", "name.x", "skipped", "hidden"} {
		if got, ok := Type(st, strings.Split(path, ".")); ok {
			t.Errorf("Type(%s) = %v, want none", path, got)
		}
	}
	if got, want := Names(st), []string{"name", "rule", "group", "limits", "extra"}; !slices.Equal(got, want) {
		t.Errorf("Names = %q, want %q", got, want)
	}
	if got, want := Names(reflect.TypeFor[[]rule]()), []string{"match", "code"}; !slices.Equal(got, want) {
		t.Errorf("Names of a list of tables = %q, want %q", got, want)
	}
}

func TestNearest(t *testing.T) {
	known := []string{"max_recipients", "max_errors", "max_hops", "listen", "tls_cert", "tls_key"}
	for name, want := range map[string]string{
		"max_recipents":  "max_recipients", // a letter left out
		"max_recipeints": "max_recipients", // two letters swapped
		"lisen":          "listen",
		"tls_kye":        "tls_key",
		"max_erors":      "max_errors",
		"colour":         "", // nothing like it
		"hops":           "", // too far from max_hops for its length
	} {
		if got := Nearest(name, known); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", name, got, want)
		}
	}
}
