package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary files. Seeds (testdata/fuzz/FuzzParse)
// are the good and bad configurations of the tests and the demo's
// gateway.toml. Parse must never panic; a file it refuses gets an Errors
// value whose every entry names the file and a line that exists in it,
// so that `sluice check` always points somewhere real; and the same file
// is refused again. (Which type error toml reports first is not always the
// same: it decodes tables in map order.)
func FuzzParse(f *testing.F) {
	const path = "/etc/sluice/gateway.toml"
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := Parse(path, src)
		if err == nil {
			if c == nil || c.Hostname == "" || len(c.Domains) == 0 {
				t.Fatalf("accepted without a hostname or domains: %+v", c)
			}
			return
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
		}
		lines := strings.Count(string(src), "\n") + 1
		for _, e := range errs {
			if e.File != path || e.Line < 1 || e.Line > lines || e.Msg == "" {
				t.Errorf("error %q: want %s:LINE with 1 <= LINE <= %d and a message", e.Error(), path, lines)
			}
		}
		if _, again := Parse(path, src); again == nil {
			t.Fatalf("refused once (%v), accepted the second time", err)
		}
	})
}
