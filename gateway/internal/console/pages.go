package console

import (
	"bytes"
	"cmp"
	"context"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/admin"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// page is what every page's template gets.
type page struct {
	Title string
	Nav   string // the menu entry to mark as current: list, chain, queue
	// HasQueue shows the queue in the menu.
	HasQueue bool
	// User is who is logged in and CSRF the token of the log-out form.
	User, CSRF string
	Error      string
	// Data is the page's own.
	Data any
}

// listData is the list page's.
type listData struct {
	Form     url.Values
	Outcomes []string
	Records  []activity.Record
	Total    int
	From, To int // the rows shown, 1-based
	Prev     string
	Next     string
	Charts   []chart
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := listData{Form: q, Outcomes: Outcomes}
	f, err := parseFilter(q)
	pageNo := 1
	if err == nil {
		// At most the page whose offset an int holds.
		pageNo, err = parseCount(q, "page", 1, math.MaxInt/pageSize)
		pageNo = max(pageNo, 1)
	}
	if err != nil {
		s.render(w, r, http.StatusBadRequest, "list", page{Title: "Transactions", Nav: "list", Error: err.Error(), Data: d})
		return
	}
	f.Limit, f.Offset = pageSize, (pageNo-1)*pageSize
	d.Records, d.Total, err = s.c.Store.Query(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(d.Records) > 0 {
		d.From, d.To = f.Offset+1, f.Offset+len(d.Records)
	}
	if pageNo > 1 {
		d.Prev = pageLink(q, pageNo-1)
	}
	if f.Offset+len(d.Records) < d.Total {
		d.Next = pageLink(q, pageNo+1)
	}
	d.Charts, err = s.charts(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "list", page{Title: "Transactions", Nav: "list", Data: d})
}

// pageLink is the list's URL with the same filters at another page.
func pageLink(q url.Values, n int) string {
	v := url.Values{}
	for k, vs := range q {
		if k != "page" && len(vs) > 0 && vs[0] != "" {
			v.Set(k, vs[0])
		}
	}
	if n > 1 {
		v.Set("page", strconv.Itoa(n))
	}
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}

// charts are the two charts of the list page: per hour over the last day,
// per day over the last 30 days.
func (s *server) charts(ctx context.Context) ([]chart, error) {
	now := s.c.Now().UTC()
	hourEnd := now.Truncate(time.Hour).Add(time.Hour)
	dayEnd := now.Truncate(24 * time.Hour).Add(24 * time.Hour)
	specs := []struct {
		title, id   string
		since, till time.Time
		step        time.Duration
		label       string
	}{
		{"Messages per hour, last 24 hours", "hourly", hourEnd.Add(-24 * time.Hour), hourEnd, time.Hour, "15:04"},
		{"Messages per day, last 30 days", "daily", dayEnd.AddDate(0, 0, -30), dayEnd, 24 * time.Hour, "Jan 2"},
	}
	var out []chart
	for _, sp := range specs {
		b, err := s.c.Store.Stats(ctx, sp.since, sp.till, sp.step)
		if err != nil {
			return nil, err
		}
		out = append(out, drawChart(sp.title, sp.id, sp.since, sp.till, sp.step, sp.label, b))
	}
	return out, nil
}

func (s *server) detail(w http.ResponseWriter, r *http.Request) {
	rec, err := s.c.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "detail", page{Title: "Transaction " + rec.ID, Nav: "list", Data: rec})
}

// chainData is the chain page's.
type chainData struct {
	Chain admin.Chain
	// Reloaded is set after a reload: OK, its errors or the settings not
	// applied.
	Reloaded   bool
	OK         bool
	Errors     []string
	NotApplied []string
}

func (s *server) chain(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "chain", page{Title: "Filter chain", Nav: "chain", Data: chainData{Chain: s.c.Chain()}})
}

// reload answers the chain page's button: it shows the chain with the
// reload's outcome, 422 when it failed (as POST /admin/reload).
func (s *server) reload(w http.ResponseWriter, r *http.Request) {
	notApplied, err := s.c.Reload(context.WithoutCancel(r.Context()))
	d := chainData{Reloaded: true, OK: err == nil, NotApplied: notApplied}
	code := http.StatusOK
	if err != nil {
		d.Errors = strings.Split(err.Error(), "\n")
		code = http.StatusUnprocessableEntity
	}
	d.Chain = s.c.Chain()
	s.render(w, r, code, "chain", page{Title: "Filter chain", Nav: "chain", Data: d})
}

func (s *server) queue(w http.ResponseWriter, r *http.Request) {
	if s.c.Queue == nil {
		s.render(w, r, http.StatusNotFound, "queue", page{Title: "Queue", Nav: "queue", Error: "This gateway has no queue."})
		return
	}
	list, err := s.c.Queue.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Oldest first, as /admin/queue.
	slices.SortStableFunc(list, func(a, b queue.Summary) int {
		return cmp.Or(a.Arrived.Compare(b.Arrived), strings.Compare(a.ID, b.ID))
	})
	s.render(w, r, http.StatusOK, "queue", page{Title: "Queue", Nav: "queue", Data: list})
}

// fail shows an error page for err.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := status(err)
	msg := err.Error()
	switch code {
	case http.StatusInternalServerError:
		s.c.Logger.Error("console: reading the activity store", "err", err)
		msg = "The activity store failed: " + msg
	case http.StatusNotFound:
		msg = "No such transaction: it may be older than the retention."
	case http.StatusServiceUnavailable:
		// The store logs its outage itself, once a minute.
		msg = "The activity store is not connected yet; mail flows meanwhile, unrecorded. " + msg
	}
	s.render(w, r, code, "error", page{Title: http.StatusText(code), Error: msg})
}

func (s *server) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	p.HasQueue = s.c.Queue != nil
	p.User, p.CSRF = s.c.User(r), s.c.CSRFToken(r)
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		s.c.Logger.Error("console: rendering", "page", name, "err", err)
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Pages show who wrote to whom: a browser keeps none of them, so the
	// back button after logging out shows nothing.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ms": func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	},
	"short": func(s string) string {
		if r := []rune(s); len(r) > 60 {
			return string(r[:59]) + "…"
		}
		return s
	},
	"addresses": func(rs []activity.Recipient) string {
		a := make([]string, len(rs))
		for i, r := range rs {
			a[i] = r.Address
		}
		return strings.Join(a, ", ")
	},
	"join":    strings.Join,
	"sender":  func(s string) string { return cmp.Or(s, "<>") },
	"txlink":  func(id string) string { return "/tx/" + url.PathEscape(id) },
	"orNone":  func(s string) string { return cmp.Or(s, "—") },
	"score":   func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
	"pattern": func(outcome string) string { return "url(#p-" + outcome + ")" },
}
