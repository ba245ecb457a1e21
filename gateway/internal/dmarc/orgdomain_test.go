package dmarc

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/idna"
)

// pslTests is the public-suffix list's own test file (public domain).
var pslTests = filepath.Join("..", "..", "..", "testdata", "conformance", "psl", "tests.txt")

// pslDiffers lists the cases where golang.org/x/net/publicsuffix's snapshot of
// the list gives another answer than the one the tests were written with,
// and why. None so far.
var pslDiffers = map[string]string{}

// TestPSLConformance runs every checkPublicSuffix case: registrableDomain
// must give the expected organisational domain, or false for "null". Names
// are compared in A-labels, since that is how DMARC sees domains.
func TestPSLConformance(t *testing.T) {
	f, err := os.Open(pslTests)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, passed := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			t.Fatalf("unexpected line %q", line)
		}
		input, want := fields[0], fields[1]
		total++
		if input == "null" {
			input = ""
		}
		wantOK := want != "null"
		if wantOK {
			if want, err = idna.Lookup.ToASCII(want); err != nil {
				t.Fatalf("%q: expected value: %v", line, err)
			}
		} else {
			want = ""
		}
		got, ok := registrableDomain(input)
		if got != want || ok != wantOK {
			if why, known := pslDiffers[fields[0]]; known {
				t.Logf("%s: got %q, list says %q: %s", fields[0], got, fields[1], why)
				continue
			}
			t.Errorf("registrableDomain(%q) = %q, %v; want %q, %v", input, got, ok, want, wantOK)
			continue
		}
		passed++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if total != 78 {
		t.Errorf("read %d cases, the suite has 78", total)
	}
	t.Logf("PSL conformance: %d/%d", passed, total)
}

func TestOrganizationalDomain(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"mail.Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"a.b.example.co.uk", "example.co.uk"},
		{"co.uk", "co.uk"}, // a public suffix is its own
		{"com", "com"},
		{"www.食狮.公司.cn", "xn--85x722f.xn--55qx5d.cn"},
		{"not a domain", "not a domain"},
	} {
		if got := OrganizationalDomain(c.in); got != c.want {
			t.Errorf("OrganizationalDomain(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
