package console

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/admin"
)

// testNow is the clock of every test: the charts end at its hour and day.
var testNow = time.Date(2026, 12, 6, 18, 30, 0, 0, time.UTC)

// testRecords are five transactions, newest first, from two nodes (s5
// and s3 from mx2, the others from mx1); s1 was sent through the
// submission service by the user alice, the others arrived at the MX:
//
//	t5 refused by plugin:dmarc      from x@spoof.test  to info@ours.test
//	t4 forwarded by destination      from bob@b.test    to sales@ours.test, info@ours.test
//	t3 dropped by plugin:spam        from spam@c.test   to info@other.test
//	t2 refused by host (relay)       from bob@b.test    to victim@elsewhere.test
//	t1 queued by queue, 2 days ago   from alice@a.test  to info@ours.test
func testRecords() []activity.Record {
	at := func(d time.Duration) time.Time { return testNow.Add(-d) }
	return []activity.Record{
		{ID: "s5-1", Node: "mx2", Time: at(10 * time.Minute), From: "x@spoof.test", Outcome: "refused", DecidedBy: "plugin:dmarc",
			Reply: "550 5.7.1 DMARC policy of spoof.test refuses this message", Subject: "Invoice", MessageID: "<m5@spoof.test>",
			Recipients: []activity.Recipient{{Address: "info@ours.test", Destinations: []string{"me@home.test"}, Outcome: "refused", DecidedBy: "plugin:dmarc"}},
			SPF:        "fail", DMARC: "fail", Score: 7.5, Symbols: []string{"DMARC_REJECT=5", "SPF_FAIL=2.5"},
			Plugins: []activity.Verdict{{Plugin: "dmarc", Stage: "data", Action: "reject", Duration: 1500 * time.Microsecond}}},
		{ID: "s4-1", Node: "mx1", Time: at(2 * time.Hour), From: "bob@b.test", Outcome: "forwarded", DecidedBy: "destination",
			Reply: "250 2.0.0 Ok: queued as ABC", Subject: "Hello there", MessageID: "<m4@b.test>", Relay: "mx.home.test", Size: 2048,
			Recipients: []activity.Recipient{
				{Address: "sales@ours.test", Destinations: []string{"team@home.test"}, Outcome: "forwarded", DecidedBy: "destination"},
				{Address: "info@ours.test", Destinations: []string{"me@home.test"}, Outcome: "forwarded", DecidedBy: "destination"},
			}},
		{ID: "s3-1", Node: "mx2", Time: at(5 * time.Hour), From: "spam@c.test", Outcome: "dropped", DecidedBy: "plugin:spam",
			Reply: "250 2.0.0 Ok", Subject: "Cheap", MessageID: "<m3@c.test>",
			Recipients: []activity.Recipient{{Address: "info@other.test", Outcome: "dropped", DecidedBy: "plugin:spam"}}},
		{ID: "s2-1", Node: "mx1", Time: at(6 * time.Hour), From: "bob@b.test", Outcome: "refused", DecidedBy: "host",
			Reply:      "554 5.7.1 Relay access denied",
			Recipients: []activity.Recipient{{Address: "victim@elsewhere.test", Outcome: "refused", DecidedBy: "host", Reply: "554 5.7.1 Relay access denied"}}},
		{ID: "s1-1", Node: "mx1", User: "alice", Time: at(48 * time.Hour), From: "alice@a.test", Outcome: "queued", DecidedBy: "queue",
			Reply: "250 2.0.0 queued", Subject: "Report", MessageID: "<m1@a.test>", QueueIDs: []string{"q1"},
			Recipients: []activity.Recipient{{Address: "info@ours.test", Destinations: []string{"me@home.test"}, Outcome: "queued", DecidedBy: "queue"}}},
	}
}

// storeWith is the activity store in a temporary directory holding recs:
// written, and the store closed (which writes what is pending) and
// opened again to be read.
func storeWith(t *testing.T, recs []activity.Record) *activity.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "activity.db")
	s, err := activity.Open(path, activity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		s.Record(r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c := s.Counts(); c.Written != uint64(len(recs)) {
		t.Fatalf("store counts %+v, want %d written", c, len(recs))
	}
	s, err = activity.Open(path, activity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testServer serves the console over store, with a chain of one plugin
// whose reload fails the first time, and no queue.
func testServer(t *testing.T, store Store) *httptest.Server {
	t.Helper()
	generation := uint64(1)
	calls := 0
	srv := httptest.NewServer(Handler(Config{
		Store: store,
		Chain: func() admin.Chain {
			return admin.Chain{Generation: generation, OpenGenerations: 1, Plugins: []admin.Plugin{{Name: "dmarc", Path: "plugins/dmarc.wasm", SHA256: "ab12cd34", Stages: []string{"data"}, Instances: 2, Services: []string{"mx", "submission"}}}}
		},
		Reload: func(context.Context) ([]string, error) {
			calls++
			if calls == 1 {
				return nil, errors.New("gateway.toml:12: plugin dmarc: no such file")
			}
			generation++
			return []string{"smtp.listen"}, nil
		},
		CSRFToken: func(*http.Request) string { return "tok3n" },
		User:      func(*http.Request) string { return "admin" },
		Now:       func() time.Time { return testNow },
	}))
	t.Cleanup(srv.Close)
	return srv
}

// get fetches path and returns the status and body.
func get(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// getJSON fetches path, checks the status and decodes the body into v.
func getJSON(t *testing.T, srv *httptest.Server, path string, wantStatus int, v any) {
	t.Helper()
	code, body := get(t, srv, path)
	if code != wantStatus {
		t.Fatalf("GET %s: %d %s, want %d", path, code, body, wantStatus)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// getPage fetches an HTML page, checks its status and parses it.
func getPage(t *testing.T, srv *httptest.Server, path string, wantStatus int) *html.Node {
	t.Helper()
	code, body := get(t, srv, path)
	if code != wantStatus {
		t.Fatalf("GET %s: %d, want %d:\n%s", path, code, wantStatus, body)
	}
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// findAll returns the elements under n with the tag and, for each
// attribute given as "name=value", that value; "name" alone asks only
// that the attribute be there.
func findAll(n *html.Node, tag string, attrs ...string) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && d.Data == tag && hasAttrs(d, attrs) {
			out = append(out, d)
		}
	}
	return out
}

func hasAttrs(n *html.Node, attrs []string) bool {
	for _, a := range attrs {
		k, v, hasValue := strings.Cut(a, "=")
		i := slices.IndexFunc(n.Attr, func(at html.Attribute) bool { return at.Key == k })
		if i < 0 || hasValue && n.Attr[i].Val != v {
			return false
		}
	}
	return true
}

// attr is the value of n's attribute key, "" if none.
func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text is the text under n, spaces collapsed, a space between the text
// of two elements.
func text(n *html.Node) string {
	var words []string
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			words = append(words, strings.Fields(d.Data)...)
		}
	}
	return strings.Join(words, " ")
}
