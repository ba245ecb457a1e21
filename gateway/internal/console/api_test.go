package console

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
)

type txAnswer struct {
	Total        int               `json:"total"`
	Transactions []activity.Record `json:"transactions"`
}

func ids(recs []activity.Record) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

// Each filter parameter of GET /api/v1/transactions selects what it says,
// newest first, and total counts all that match.
func TestAPIFilters(t *testing.T) {
	srv := testServer(t, storeWith(t, testRecords()))
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{"s5-1", "s4-1", "s3-1", "s2-1", "s1-1"}},
		{"address=info@ours.test", []string{"s5-1", "s4-1", "s1-1"}},
		{"address=INFO@ours.test", []string{"s5-1", "s4-1", "s1-1"}},
		{"address=other.test", []string{"s3-1"}},
		{"address=b.test", []string{"s4-1", "s2-1"}}, // the sender's domain
		{"sender=bob@b.test", []string{"s4-1", "s2-1"}},
		{"sender=a.test", []string{"s1-1"}},
		{"outcome=refused", []string{"s5-1", "s2-1"}},
		{"outcome=queued", []string{"s1-1"}},
		{"decided_by=host", []string{"s2-1"}},
		{"decided_by=plugin", []string{"s5-1", "s3-1"}},
		{"decided_by=plugin:dmarc", []string{"s5-1"}},
		{"since=2026-12-06", []string{"s5-1", "s4-1", "s3-1", "s2-1"}},
		{"until=2026-12-04", []string{"s1-1"}}, // a date includes its whole day
		{"since=2026-12-06T14:00:00Z&until=2026-12-06T17:00:00Z", []string{"s4-1"}},
		{"q=Invoice", []string{"s5-1"}},
		{"q=m3@c.test", []string{"s3-1"}},
		{"address=info@ours.test&outcome=forwarded", []string{"s4-1"}},
		{"outcome=tempfailed", []string{}},
		{"node=mx2", []string{"s5-1", "s3-1"}},
		{"node=mx1&sender=bob@b.test", []string{"s4-1", "s2-1"}},
		{"user=alice", []string{"s1-1"}},
		{"user=alice&node=mx2", []string{}},
		{"user=bob", []string{}},
	} {
		var a txAnswer
		getJSON(t, srv, "/api/v1/transactions?"+c.query, http.StatusOK, &a)
		if got := ids(a.Transactions); !slices.Equal(got, c.want) || a.Total != len(c.want) {
			t.Errorf("?%s: total %d %v, want %v", c.query, a.Total, got, c.want)
		}
	}
}

// limit and offset page through the selection; total stays the count of
// all that match.
func TestAPIPaging(t *testing.T) {
	srv := testServer(t, storeWith(t, testRecords()))
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"limit=2", []string{"s5-1", "s4-1"}},
		{"limit=2&offset=2", []string{"s3-1", "s2-1"}},
		{"limit=2&offset=4", []string{"s1-1"}},
		{"offset=5", []string{}},
		{"limit=500", []string{"s5-1", "s4-1", "s3-1", "s2-1", "s1-1"}},
	} {
		var a txAnswer
		getJSON(t, srv, "/api/v1/transactions?"+c.query, http.StatusOK, &a)
		if got := ids(a.Transactions); !slices.Equal(got, c.want) || a.Total != 5 {
			t.Errorf("?%s: total %d %v, want 5 %v", c.query, a.Total, got, c.want)
		}
	}
}

// One transaction by id, with everything recorded; an unknown id is a
// JSON 404, as is an unknown endpoint.
func TestAPITransaction(t *testing.T) {
	srv := testServer(t, storeWith(t, testRecords()))
	var r activity.Record
	getJSON(t, srv, "/api/v1/transactions/s5-1", http.StatusOK, &r)
	want := testRecords()[0]
	if r.ID != "s5-1" || r.Node != "mx2" || r.Reply != want.Reply || r.DMARC != "fail" || len(r.Plugins) != 1 || r.Plugins[0].Duration != want.Plugins[0].Duration ||
		!slices.Equal(r.Symbols, want.Symbols) || r.Recipients[0].Destinations[0] != "me@home.test" {
		t.Errorf("got %+v, want %+v", r, want)
	}
	// The submission user is the field "user": "" for mail from the MX.
	for id, want := range map[string]string{"s1-1": "alice", "s5-1": ""} {
		var m map[string]any
		getJSON(t, srv, "/api/v1/transactions/"+id, http.StatusOK, &m)
		if u, ok := m["user"]; !ok || u != want {
			t.Errorf("%s: user %v (present %v), want %q", id, u, ok, want)
		}
	}
	for _, path := range []string{"/api/v1/transactions/nope-1", "/api/v1/nothing"} {
		var e apiError
		getJSON(t, srv, path, http.StatusNotFound, &e)
		if e.Error == "" {
			t.Errorf("%s: no error text", path)
		}
	}
}

// Parameters that make no sense get a JSON 400 that names the problem.
func TestAPIBadParams(t *testing.T) {
	srv := testServer(t, storeWith(t, testRecords()))
	for _, c := range []struct{ path, want string }{
		{"/api/v1/transactions?outcome=lost", "outcome"},
		{"/api/v1/transactions?since=yesterday", "since"},
		{"/api/v1/transactions?until=2026-13-01", "until"},
		{"/api/v1/transactions?since=2026-12-06&until=2026-12-01", "before"},
		{"/api/v1/transactions?limit=501", "limit"},
		{"/api/v1/transactions?limit=-1", "limit"},
		{"/api/v1/transactions?offset=x", "offset"},
		{"/api/v1/stats?step=fast", "step"},
		{"/api/v1/stats?step=1s", "step"},
		{"/api/v1/stats?since=2026-01-01&until=2026-12-01&step=1m", "buckets"},
		{"/api/v1/stats?since=2026-12-06&until=2026-12-01", "before"},
	} {
		var e apiError
		getJSON(t, srv, c.path, http.StatusBadRequest, &e)
		if !strings.Contains(e.Error, c.want) {
			t.Errorf("%s: error %q does not name %q", c.path, e.Error, c.want)
		}
	}
}

// Stats counts by outcome per step; without parameters, per hour over the
// last 24 hours.
func TestAPIStats(t *testing.T) {
	srv := testServer(t, storeWith(t, testRecords()))
	var a statsAnswer
	getJSON(t, srv, "/api/v1/stats", http.StatusOK, &a)
	if a.Step != "1h0m0s" || len(a.Buckets) != 24 || !a.Until.Equal(testNow) {
		t.Fatalf("default stats: step %s, %d buckets, until %s", a.Step, len(a.Buckets), a.Until)
	}
	sum := map[string]int{}
	for _, b := range a.Buckets {
		for o, n := range b.Counts {
			sum[o] += n
		}
	}
	if sum["refused"] != 2 || sum["forwarded"] != 1 || sum["dropped"] != 1 || sum["queued"] != 0 {
		t.Errorf("last day's counts %v", sum)
	}
	var d statsAnswer
	getJSON(t, srv, "/api/v1/stats?since=2026-11-07&until=2026-12-06&step=24h", http.StatusOK, &d)
	if len(d.Buckets) != 30 || d.Buckets[27].Counts["queued"] != 1 || d.Buckets[29].Counts["refused"] != 2 {
		t.Errorf("30 days: %d buckets, %+v", len(d.Buckets), d.Buckets)
	}
}

// A store that has not connected (its PostgreSQL down) makes the API and
// the pages answer 503 with the reason, not a failure of ours.
func TestStoreUnavailable(t *testing.T) {
	store, err := activity.Open("postgres://sluice:pw@127.0.0.1:1/sluice?sslmode=disable", activity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv := testServer(t, store)
	for _, path := range []string{"/api/v1/transactions", "/api/v1/transactions/s5-1", "/api/v1/stats"} {
		var e apiError
		getJSON(t, srv, path, http.StatusServiceUnavailable, &e)
		if !strings.Contains(e.Error, "activity store unavailable") {
			t.Errorf("%s: %q", path, e.Error)
		}
	}
	for _, path := range []string{"/", "/tx/s5-1"} {
		doc := getPage(t, srv, path, http.StatusServiceUnavailable)
		if a := findAll(doc, "p", "role=alert"); len(a) != 1 || !strings.Contains(text(a[0]), "not connected yet") {
			t.Errorf("%s: no alert saying the store is not connected", path)
		}
	}
}
