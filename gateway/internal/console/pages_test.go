package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// rowLinks are the detail links of the list's rows, in order.
func rowLinks(doc *html.Node) []string {
	var out []string
	for _, tb := range findAll(doc, "tbody") {
		for _, a := range findAll(tb, "a") {
			out = append(out, attr(a, "href"))
		}
	}
	return out
}

// The list shows the transactions newest first, a row per transaction
// with its time, sender, recipients, outcome, decider and reply and a link
// to its detail, in a table with column headers; the filter form has a
// label for each field and keeps what was asked; and no script is needed.
func TestListPage(t *testing.T) {
	srv := testServer(t, storeWith(t, testRecords()))
	doc := getPage(t, srv, "/", http.StatusOK)
	if got, want := rowLinks(doc), []string{"/tx/s5-1", "/tx/s4-1", "/tx/s3-1", "/tx/s2-1", "/tx/s1-1"}; !slices.Equal(got, want) {
		t.Errorf("rows link %v, want %v", got, want)
	}
	if s := findAll(doc, "script"); len(s) != 0 {
		t.Errorf("%d <script> elements; reading must not need JavaScript", len(s))
	}
	if len(findAll(doc, "h1")) != 1 || len(findAll(doc, "th", "scope=col")) != 8 {
		t.Errorf("want one h1 and 8 column headers")
	}
	rows := findAll(findAll(doc, "tbody")[0], "tr")
	first := rows[0]
	cells := findAll(first, "td")
	got := []string{}
	for _, c := range cells[:7] {
		got = append(got, text(c))
	}
	want := []string{"2026-12-06 18:20:00", "x@spoof.test", "info@ours.test", "refused", "plugin:dmarc", "550 5.7.1 DMARC policy of spoof.test refuses this message", "mx2"}
	if !slices.Equal(got, want) {
		t.Errorf("first row %q, want %q", got, want)
	}
	// A submitted message says who sent it, under its sender; the others
	// say nothing more.
	if got := text(findAll(rows[4], "td")[1]); got != "alice@a.test submitted by alice" {
		t.Errorf("submitted row's sender %q", got)
	}
	if got := findAll(rows[1], "span", "class=submitter"); len(got) != 0 {
		t.Errorf("a row from the MX says it was submitted")
	}
	// Every field of the form has its label, and the form is a GET to /.
	form := findAll(doc, "form", "method=get")
	if len(form) != 1 || attr(form[0], "action") != "/" {
		t.Fatalf("no GET filter form")
	}
	labels := map[string]bool{}
	for _, l := range findAll(form[0], "label") {
		labels[attr(l, "for")] = true
	}
	var names []string
	for _, tag := range []string{"input", "select"} {
		for _, in := range findAll(form[0], tag) {
			names = append(names, attr(in, "name"))
			if !labels[attr(in, "id")] {
				t.Errorf("field %s has no label", attr(in, "name"))
			}
		}
	}
	slices.Sort(names)
	if want := []string{"address", "decided_by", "node", "outcome", "q", "sender", "since", "until", "user"}; !slices.Equal(names, want) {
		t.Errorf("filter fields %v, want %v", names, want)
	}

	// A filter selects, and the form shows it.
	doc = getPage(t, srv, "/?address=info%40ours.test&outcome=refused", http.StatusOK)
	if got := rowLinks(doc); !slices.Equal(got, []string{"/tx/s5-1"}) {
		t.Errorf("filtered rows %v", got)
	}
	if in := findAll(doc, "input", "name=address"); attr(in[0], "value") != "info@ours.test" {
		t.Errorf("address field %q", attr(in[0], "value"))
	}
	if opt := findAll(doc, "option", "selected"); len(opt) != 1 || text(opt[0]) != "refused" {
		t.Errorf("outcome not kept selected")
	}

	doc = getPage(t, srv, "/?user=alice", http.StatusOK)
	if got := rowLinks(doc); !slices.Equal(got, []string{"/tx/s1-1"}) {
		t.Errorf("user alice's rows %v", got)
	}
	if in := findAll(doc, "input", "name=user"); attr(in[0], "value") != "alice" {
		t.Errorf("user field %q", attr(in[0], "value"))
	}

	doc = getPage(t, srv, "/?node=mx2", http.StatusOK)
	if got := rowLinks(doc); !slices.Equal(got, []string{"/tx/s5-1", "/tx/s3-1"}) {
		t.Errorf("node mx2's rows %v", got)
	}

	// A bad filter is a 400 with the reason on the page, and the form.
	doc = getPage(t, srv, "/?since=yesterday", http.StatusBadRequest)
	if a := findAll(doc, "p", "role=alert"); len(a) != 1 || !strings.Contains(text(a[0]), "since") {
		t.Errorf("no alert naming since")
	}
	if len(findAll(doc, "form", "method=get")) != 1 {
		t.Errorf("no filter form on the error page")
	}
}

// 120 transactions make three pages of 50; the paging links keep the
// filters and lead to the older and newer pages.
func TestListPaging(t *testing.T) {
	var recs []activity.Record
	for i := range 120 {
		recs = append(recs, activity.Record{ID: "p-" + strconv.Itoa(i), Time: testNow.Add(-time.Duration(i) * time.Minute), Outcome: "forwarded", From: "a@b.test",
			Recipients: []activity.Recipient{{Address: "info@ours.test"}}})
	}
	srv := testServer(t, storeWith(t, recs))
	link := func(doc *html.Node, rel string) string {
		a := findAll(doc, "a", "rel="+rel)
		if len(a) == 0 {
			return ""
		}
		return attr(a[0], "href")
	}
	doc := getPage(t, srv, "/?outcome=forwarded", http.StatusOK)
	if n := len(rowLinks(doc)); n != 50 || link(doc, "prev") != "" {
		t.Fatalf("page 1: %d rows, prev %q", n, link(doc, "prev"))
	}
	next := link(doc, "next")
	u, _ := url.Parse(next)
	if u.Query().Get("page") != "2" || u.Query().Get("outcome") != "forwarded" {
		t.Fatalf("next link %q", next)
	}
	doc = getPage(t, srv, next, http.StatusOK)
	if rows := rowLinks(doc); len(rows) != 50 || rows[0] != "/tx/p-50" {
		t.Errorf("page 2 begins %v", rows[:1])
	}
	doc = getPage(t, srv, link(doc, "next"), http.StatusOK)
	if rows := rowLinks(doc); len(rows) != 20 || link(doc, "next") != "" || link(doc, "prev") == "" {
		t.Errorf("page 3: %d rows, next %q, prev %q", len(rows), link(doc, "next"), link(doc, "prev"))
	}
	if h := findAll(doc, "h2", "id=tx-heading"); text(h[0]) != "Transactions 101–120 of 120" {
		t.Errorf("heading %q", text(h[0]))
	}
	// A page past the end says so, not "Transactions 0–0 of 120".
	doc = getPage(t, srv, "/?page=4", http.StatusOK)
	if h := findAll(doc, "h2", "id=tx-heading"); text(h[0]) != "No transactions on this page, 120 in all" || link(doc, "prev") == "" {
		t.Errorf("page 4: heading %q, prev %q", text(h[0]), link(doc, "prev"))
	}
	// A page number whose offset would overflow is the client's error,
	// not the first page numbered from a negative row.
	getPage(t, srv, "/?page=999999999999999999", http.StatusBadRequest)
}

// The charts are inline SVG: 24 hourly bars and 30 daily ones, each bar
// with a <title> giving its numbers, segments stacked by outcome, and a
// legend naming every outcome.
func TestCharts(t *testing.T) {
	srv := testServer(t, storeWith(t, testRecords()))
	doc := getPage(t, srv, "/", http.StatusOK)
	svgs := findAll(doc, "svg")
	if len(svgs) != 2 {
		t.Fatalf("%d svg charts, want 2", len(svgs))
	}
	for i, want := range []int{24, 30} {
		bars := findAll(svgs[i], "g", "class=bar")
		if len(bars) != want {
			t.Errorf("chart %d: %d bars, want %d", i, len(bars), want)
		}
		for _, b := range bars {
			if len(findAll(b, "title")) != 1 {
				t.Errorf("chart %d: a bar without its title", i)
			}
		}
		var legend []string
		for _, g := range findAll(svgs[i], "g", "class=legend") {
			legend = append(legend, text(g))
		}
		if !slices.Equal(legend, Outcomes) {
			t.Errorf("chart %d legend %v", i, legend)
		}
		if attr(svgs[i], "role") != "img" || attr(svgs[i], "aria-labelledby") == "" {
			t.Errorf("chart %d is not labelled", i)
		}
	}
	// The hourly chart's last bar (18:00) holds the refusal 10 minutes
	// ago; the daily chart's last bar (today) the four of today, stacked.
	hourly := findAll(svgs[0], "g", "class=bar")
	last := hourly[23]
	if got := text(findAll(last, "title")[0]); got != "2026-12-06 18:00 UTC: 1 (1 refused)" {
		t.Errorf("last hourly bar %q", got)
	}
	daily := findAll(svgs[1], "g", "class=bar")
	today := daily[29]
	if got := text(findAll(today, "title")[0]); got != "2026-12-06: 4 (1 forwarded, 1 dropped, 2 refused)" {
		t.Errorf("today's bar %q", got)
	}
	var segs []string
	prevY := 1 << 30
	for _, r := range findAll(today, "rect") {
		if o := attr(r, "data-outcome"); o != "" {
			segs = append(segs, o+"="+attr(r, "data-count"))
			y, _ := strconv.Atoi(attr(r, "y"))
			if y >= prevY {
				t.Errorf("segment %s is not above the one before", o)
			}
			prevY = y
			if attr(r, "fill") != "url(#p-daily-"+o+")" {
				t.Errorf("segment %s fill %q", o, attr(r, "fill"))
			}
		}
	}
	if want := []string{"forwarded=1", "dropped=1", "refused=2"}; !slices.Equal(segs, want) {
		t.Errorf("today's segments %v, want %v", segs, want)
	}
	if got := text(findAll(daily[27], "title")[0]); got != "2026-12-04: 1 (1 queued)" {
		t.Errorf("two days ago %q", got)
	}
}

// The detail page shows everything recorded of a transaction; an unknown
// one is a 404 page.
func TestDetailPage(t *testing.T) {
	srv := testServer(t, storeWith(t, testRecords()))
	doc := getPage(t, srv, "/tx/s5-1", http.StatusOK)
	body := text(doc)
	for _, want := range []string{
		"550 5.7.1 DMARC policy of spoof.test refuses this message", "plugin:dmarc", "x@spoof.test",
		"info@ours.test", "me@home.test", "DMARC fail", "SPF fail", "7.5", "DMARC_REJECT=5, SPF_FAIL=2.5",
		"dmarc data reject no 1.5 ms", "<m5@spoof.test>", "Invoice", "Node mx2", "Submitted by — (arrived at the MX)",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("detail lacks %q:\n%s", want, body)
		}
	}
	if len(findAll(doc, "th", "scope=row")) != 2 { // a recipient and a plugin
		t.Errorf("want row headers for the recipient and the plugin")
	}
	if body := text(getPage(t, srv, "/tx/s1-1", http.StatusOK)); !strings.Contains(body, "Submitted by alice (submission service)") {
		t.Errorf("submitted detail lacks its user:\n%s", body)
	}
	doc = getPage(t, srv, "/tx/s4-1", http.StatusOK)
	if body := text(doc); !strings.Contains(body, "sales@ours.test team@home.test forwarded destination") || !strings.Contains(body, "mx.home.test") || !strings.Contains(body, "2048 bytes") {
		t.Errorf("forwarded detail:\n%s", body)
	}
	doc = getPage(t, srv, "/tx/nope-1", http.StatusNotFound)
	if a := findAll(doc, "p", "role=alert"); len(a) != 1 || !strings.Contains(text(a[0]), "No such transaction") {
		t.Errorf("404 page without its reason")
	}
}

// The chain page lists each plugin with its hash and services, and a reload form that
// posts the CSRF token; the reload shows its errors (422) or the new
// generation.
func TestChainPage(t *testing.T) {
	srv := testServer(t, storeWith(t, nil))
	doc := getPage(t, srv, "/chain", http.StatusOK)
	if c := findAll(doc, "code", "class=hash"); len(c) != 1 || text(c[0]) != "ab12cd34" {
		t.Errorf("no hash of the plugin")
	}
	if row := findAll(doc, "tr"); len(row) != 2 || !strings.Contains(text(row[1]), "mx, submission") {
		t.Errorf("no services of the plugin")
	}
	forms := findAll(doc, "form", "action=/chain/reload")
	if len(forms) != 1 || attr(forms[0], "method") != "post" || len(findAll(forms[0], "input", "name=csrf", "value=tok3n")) != 1 {
		t.Fatalf("no reload form with the csrf token")
	}
	post := func() (int, *html.Node) {
		resp, err := srv.Client().PostForm(srv.URL+"/chain/reload", url.Values{"csrf": {"tok3n"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		doc, err := html.Parse(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, doc
	}
	code, doc := post()
	if a := findAll(doc, "div", "role=alert"); code != http.StatusUnprocessableEntity || len(a) != 1 || !strings.Contains(text(a[0]), "gateway.toml:12: plugin dmarc: no such file") {
		t.Errorf("failed reload: %d, %s", code, text(doc))
	}
	code, doc = post()
	if s := findAll(doc, "div", "role=status"); code != http.StatusOK || len(s) != 1 || !strings.Contains(text(s[0]), "generation 2") || !strings.Contains(text(s[0]), "smtp.listen") {
		t.Errorf("good reload: %d, %s", code, text(doc))
	}
	// Every page offers the log-out form with the token.
	if f := findAll(doc, "form", "action=/logout"); len(f) != 1 || len(findAll(f[0], "input", "name=csrf", "value=tok3n")) != 1 || !strings.Contains(text(f[0]), "admin") {
		t.Errorf("no log-out form naming the user")
	}
}

type testQueue []queue.Summary

func (q testQueue) List(context.Context) ([]queue.Summary, error) { return q, nil }

// The queue page lists the queue oldest first, and is in the menu only
// when there is a queue.
func TestQueuePage(t *testing.T) {
	srv := testServer(t, storeWith(t, nil))
	if doc := getPage(t, srv, "/", http.StatusOK); len(findAll(doc, "a", "href=/queue")) != 0 {
		t.Errorf("queue in the menu without a queue")
	}
	getPage(t, srv, "/queue", http.StatusNotFound)

	q := testQueue{
		{ID: "q2", From: "b@b.test", Recipients: []string{"x@home.test"}, Arrived: testNow.Add(-time.Minute), LastError: "451 4.3.0 try later"},
		{ID: "q1", From: "a@a.test", Recipients: []string{"y@home.test"}, Arrived: testNow.Add(-time.Hour), Held: true},
	}
	srv2 := httptest.NewServer(Handler(Config{Store: storeWith(t, nil), Queue: q}))
	defer srv2.Close()
	doc := getPage(t, srv2, "/queue", http.StatusOK)
	if len(findAll(doc, "a", "href=/queue", "aria-current=page")) != 1 {
		t.Errorf("queue not current in the menu")
	}
	var got []string
	for _, th := range findAll(doc, "th", "scope=row") {
		got = append(got, text(th))
	}
	if !slices.Equal(got, []string{"q1", "q2"}) || !strings.Contains(text(doc), "451 4.3.0 try later") {
		t.Errorf("queue rows %v:\n%s", got, text(doc))
	}
}

// The style sheet is served from the binary.
// No page or answer of the API is kept by the browser (the back button
// after logging out); the style sheet may be.
func TestNotCached(t *testing.T) {
	srv := testServer(t, storeWith(t, nil))
	for _, path := range []string{"/", "/chain", "/api/v1/transactions", "/api/v1/stats"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", path, got)
		}
	}
}

func TestStatic(t *testing.T) {
	srv := testServer(t, storeWith(t, nil))
	code, body := get(t, srv, "/static/console.css")
	if code != http.StatusOK || !strings.Contains(string(body), ".chart") {
		t.Errorf("console.css: %d", code)
	}
	if code, _ := get(t, srv, "/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d", code)
	}
}
