package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// corpusMessage is a labelled message of testdata/corpus: its first line,
// X-Corpus-Envelope, gives in key=value words what the gateway found
// about the session and the message (as request does), which the plugin is
// not shown; helo-resolves=no says that the HELO name has no address.
type corpusMessage struct {
	name     string
	envelope string
	resolves bool
	msg      []byte
}

func readCorpus(t testing.TB, label string) []corpusMessage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", label, "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s messages in testdata/corpus: %v", label, err)
	}
	var out []corpusMessage
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		first, msg, _ := bytes.Cut(raw, []byte("\n"))
		env, ok := strings.CutPrefix(string(first), "X-Corpus-Envelope:")
		if !ok {
			t.Fatalf("%s: the first line must be X-Corpus-Envelope", f)
		}
		m := corpusMessage{name: label + "/" + filepath.Base(f), resolves: true, msg: msg}
		for word := range strings.FieldsSeq(env) {
			if word == "helo-resolves=no" {
				m.resolves = false
				continue
			}
			m.envelope += word + " "
		}
		out = append(out, m)
	}
	return out
}

// qualityConfig is the configuration the quality check runs: the
// defaults, and a URIBL zone of the test's own with the weight rspamd
// gives URIBL_BLACK.
const qualityConfig = `[[uribl]]
zone = "uribl.test"
symbol = "URIBL_TEST"
score = 7.5
`

// The detection and false positives of the default weights on the
// labelled messages of testdata/corpus, which we wrote for this test
// (README.md says more): a message is taken for spam when it gets
// X-Spam-Flag: YES (6 or more). Run with -v to see each message's score.
func TestQuality(t *testing.T) {
	spam, ham := readCorpus(t, "spam"), readCorpus(t, "ham")
	opts := []sdktest.Option{sdktest.Record(abi.TypeA, "spammy-pharmacy.example.uribl.test", "127.0.0.2")}
	for _, m := range append(append([]corpusMessage{}, spam...), ham...) {
		if helo := request(t, m.envelope).Helo; m.resolves && helo != "" {
			opts = append(opts, sdktest.Record(abi.TypeA, helo, "192.0.2.25"))
		}
	}
	p := newPlugin(t, qualityConfig, opts...)
	flagged := func(m corpusMessage) bool {
		v := scan(t, p, m.envelope, string(m.msg))
		t.Logf("%-32s %6.2f %s", m.name, total(v), symbols(v))
		return strings.Contains(describe(v), "X-Spam-Flag: YES")
	}
	detected, falsePositives := 0, 0
	for _, m := range spam {
		if flagged(m) {
			detected++
		} else {
			t.Logf("missed: %s", m.name)
		}
	}
	for _, m := range ham {
		if flagged(m) {
			falsePositives++
			t.Errorf("false positive: %s", m.name)
		}
	}
	rate := float64(detected) / float64(len(spam))
	fmt.Printf("spam quality: %d/%d spam detected (%.0f%%), %d/%d ham flagged (false positives)\n",
		detected, len(spam), 100*rate, falsePositives, len(ham))
	if rate < 0.9 {
		t.Errorf("detected %d of %d spam messages, want at least 90%%", detected, len(spam))
	}
}
