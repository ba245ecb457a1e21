package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// readmeURL is the address of rspamd in the README, which the tests
// replace with their server's.
const readmeURL = "http://127.0.0.1:11333"

// fakeRspamd answers /checkv2 with what a README row says rspamd
// answers; with none set it drops the connection, as an rspamd that is
// down would.
type fakeRspamd struct {
	mu     sync.Mutex
	answer map[string]any
}

func (f *fakeRspamd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	a := f.answer
	f.mu.Unlock()
	if a == nil || r.URL.Path != "/checkv2" || r.Method != "POST" {
		panic(http.ErrAbortHandler)
	}
	json.NewEncoder(w).Encode(a)
}

func (f *fakeRspamd) set(a map[string]any) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

// answer builds rspamd's JSON from a row's words: the action, with _ for
// a space, the score, NAME=score for each symbol, message=... for its SMTP
// message; "unreachable" is no answer.
func answer(t *testing.T, line int, words string) map[string]any {
	t.Helper()
	f := strings.Fields(words)
	if len(f) == 1 && f[0] == "unreachable" {
		return nil
	}
	if len(f) < 2 {
		t.Fatalf("README.md:%d: %q: want an action and a score", line, words)
	}
	score, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		t.Fatalf("README.md:%d: score %q", line, f[1])
	}
	action := strings.ReplaceAll(f[0], "_", " ")
	a := map[string]any{"action": action, "score": score, "required_score": 15.0, "messages": map[string]string{}}
	symbols := map[string]any{}
	for _, w := range f[2:] {
		k, v, _ := strings.Cut(w, "=")
		if k == "message" {
			a["messages"] = map[string]string{"smtp_message": strings.ReplaceAll(v, "_", " ")}
			continue
		}
		s, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("README.md:%d: symbol %q", line, w)
		}
		symbols[k] = map[string]any{"name": k, "score": s, "metric_score": s}
	}
	a["symbols"] = symbols
	if action == "rewrite subject" {
		a["subject"] = "***SPAM*** Hello"
	}
	return a
}

const readmeMessage = "From: alice@example.org\r\nTo: info@example.test\r\nSubject: Hello\r\n\r\nHi\r\n"

// Each ```toml block of the README configures the plugin, and the table
// that follows it says what rspamd answers and what the plugin does.
func TestReadmeExamples(t *testing.T) {
	fake := &fakeRspamd{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	sdktest.ReadmeTest{Plugin: "rspamd", Examples: 3, Rows: 12, Cells: 2}.Run(t, func(config string) (func(sdktest.Row) (string, string), error) {
		if !strings.Contains(config, "url") {
			config = `url = "` + readmeURL + `"` + "\n" + config
		}
		config = strings.ReplaceAll(config, readmeURL, srv.URL)
		p, err := sdktest.Configure(&plugin{}, config, sdktest.HTTPHosts(strings.TrimPrefix(srv.URL, "http://")))
		return func(r sdktest.Row) (string, string) {
			fake.set(answer(t, r.Line, r.Cells[0]))
			p.SetMessage([]byte(readmeMessage))
			v := p.Handle(t, &sdk.Request{Stage: abi.StageData, SessionID: "s1", ClientIP: "192.0.2.1", Rcpts: []string{"info@example.test"}})
			return sdktest.Describe(v), strings.ReplaceAll(r.Cells[1], `\*`, "*")
		}, err
	})
}
