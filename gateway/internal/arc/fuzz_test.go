package arc

import (
	"os"
	"strings"
	"testing"
)

// FuzzVerify feeds Verify arbitrary messages: it must never panic and its
// Result must be consistent. Seal is run on the same input with that
// Result, and what it seals must verify: pass on a good or no chain, fail on
// a failed one.
func FuzzVerify(f *testing.F) {
	hops := testHops()[1:2] // Ed25519: fast
	lookup := mapLookup(f, hops)
	h := hops[0]
	sealed := sealBy(f, sealBy(f, []byte(testMessage), h, lookup), h, lookup)
	f.Add(sealed)
	f.Add([]byte(testMessage))
	f.Add([]byte(strings.Replace(string(sealed), "i=2", "i=1", 1)))
	f.Add([]byte("ARC-Seal: i=1; cv=fail\r\n\r\n"))
	f.Add([]byte("ARC-Authentication-Results: i=1 ; x\r\nARC-Message-Signature: i=1; h=from:from; b=; bh=\r\n"))
	if suite, err := os.ReadFile(validationSuite); err == nil {
		// A few of the suite's messages, folding and all.
		for _, part := range strings.Split(string(suite), "    message:     |\n")[1:12] {
			msg, _, _ := strings.Cut(part, "\n    cv:")
			f.Add(crlf(strings.ReplaceAll(msg, "\n      ", "\n")))
		}
	}
	c := SealConfig{Domain: h.domain, Selector: h.selector, Key: h.key}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := verify(msg, lookup)
		switch r.CV {
		case CVNone:
			if r.Instances != 0 || r.OldestPass != 0 || r.Reason != "" {
				t.Fatalf("none with %+v", r)
			}
		case CVPass:
			if r.OldestPass < 1 || r.OldestPass > r.Instances || r.Instances > maxInstances || len(r.Sealers) != r.Instances {
				t.Fatalf("pass with %+v", r)
			}
		case CVFail:
			if r.OldestPass != 0 || r.Reason == "" {
				t.Fatalf("fail with %+v", r)
			}
		default:
			t.Fatalf("cv=%q", r.CV)
		}

		set, err := Seal(msg, "mx.example", "arc="+r.CV, r, c)
		if err != nil || set == nil {
			return
		}
		if len(msg) > 0 && (msg[0] == ' ' || msg[0] == '\t') {
			return // would continue the AAR: not a message
		}
		got := verify(append(set, msg...), lookup)
		want := CVPass
		if r.CV == CVFail {
			want = CVFail
		}
		if got.CV != want || got.CV == CVPass && got.Instances != r.Instances+1 {
			t.Fatalf("sealed on cv=%s: got %+v, want cv=%s\n%q", r.CV, got, want, append(set, msg...))
		}
	})
}
