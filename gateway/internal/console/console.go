// Package console is the activity console (issue 13): server-rendered
// pages on the admin listener that answer "what happened to the mail from
// X to Y?", and the same data as JSON under /api/v1/. The pages need no
// JavaScript: filters are a GET form, the charts are SVG drawn here, the
// reload button is a POST form.
//
// The console does not check who asks: the admin listener wraps it with
// the login (and checks Host and cross-origin requests before that).
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
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

// Store is what the console reads the transactions from: the activity
// store. Declared here, as the console uses it, so that the tests can give
// a small one.
type Store interface {
	// Query returns the page of transactions the filter selects, newest
	// first, and how many it selects in all.
	Query(ctx context.Context, f activity.Filter) ([]activity.Record, int, error)
	// Get returns one transaction, or activity.ErrNotFound.
	Get(ctx context.Context, id string) (activity.Record, error)
	// Stats counts the transactions by outcome in buckets of step from
	// since to until.
	Stats(ctx context.Context, since, until time.Time, step time.Duration) ([]activity.Bucket, error)
}

// Queue lists the gateway's queue.
type Queue interface {
	List(ctx context.Context) ([]queue.Summary, error)
}

// Config is what the console serves from.
type Config struct {
	Store Store
	// Chain describes the chain in use, and Reload rebuilds it: the same
	// functions as the admin endpoints'.
	Chain  func() admin.Chain
	Reload func(context.Context) (notApplied []string, err error)
	// Queue is nil when the gateway has none.
	Queue Queue
	// CSRFToken gives the token that a POST form of this request's
	// session must carry in its "csrf" field; the login wrapper checks
	// it. Nil gives "".
	CSRFToken func(*http.Request) string
	// User names who is logged in, shown with a log-out button (a POST
	// to /logout, which the login serves); nil or "" shows neither.
	User func(*http.Request) string
	// Now is the clock, for the charts; nil is time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

//go:embed templates/*.html static/*
var files embed.FS

// Outcomes are Record.Outcome's words, in the order the charts stack them.
var Outcomes = []string{"forwarded", "queued", "dropped", "refused", "tempfailed", "none"}

// pageSize is how many transactions a page of the list shows.
const pageSize = 50

// Handler returns the console:
//
//	GET  /                  transactions, newest first, with the filter form and the charts
//	GET  /tx/{id}           one transaction
//	GET  /chain             the chain in use, with a reload button
//	POST /chain/reload      reload, then show the chain and the outcome
//	GET  /queue             the queue's messages
//	GET  /static/...        the style sheet
//	GET  /api/v1/...        the JSON API (see api.go)
func Handler(c Config) http.Handler {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CSRFToken == nil {
		c.CSRFToken = func(*http.Request) string { return "" }
	}
	if c.User == nil {
		c.User = func(*http.Request) string { return "" }
	}
	s := &server{c: c, tmpl: template.Must(template.New("").Funcs(funcs).ParseFS(files, "templates/*.html"))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.list)
	mux.HandleFunc("GET /tx/{id}", s.detail)
	mux.HandleFunc("GET /chain", s.chain)
	mux.HandleFunc("POST /chain/reload", s.reload)
	mux.HandleFunc("GET /queue", s.queue)
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.api(mux)
	return mux
}

type server struct {
	c    Config
	tmpl *template.Template
}

// badRequest is an error in what the client asked: 400.
type badRequest struct{ error }

// parseFilter reads the filter parameters shared by the list page and
// the API: address, sender, outcome, decided_by, node, user, since, until, q. since
// and until are a date (YYYY-MM-DD, UTC; until then includes that whole
// day) or an RFC 3339 time.
func parseFilter(v url.Values) (activity.Filter, error) {
	f := activity.Filter{
		Address:   strings.TrimSpace(v.Get("address")),
		Sender:    strings.TrimSpace(v.Get("sender")),
		Outcome:   strings.TrimSpace(v.Get("outcome")),
		DecidedBy: strings.TrimSpace(v.Get("decided_by")),
		Text:      strings.TrimSpace(v.Get("q")),
		Node:      strings.TrimSpace(v.Get("node")),
		User:      strings.TrimSpace(v.Get("user")),
	}
	if f.Outcome != "" && !slices.Contains(Outcomes, f.Outcome) {
		return f, badRequest{fmt.Errorf("outcome %q is not one of %s", f.Outcome, strings.Join(Outcomes, ", "))}
	}
	var err error
	if f.Since, err = parseTime("since", v.Get("since"), false); err != nil {
		return f, err
	}
	if f.Until, err = parseTime("until", v.Get("until"), true); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, badRequest{errors.New("since must be before until")}
	}
	return f, nil
}

func parseTime(name, s string, endOfDay bool) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		if endOfDay {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, badRequest{fmt.Errorf("%s %q is neither a date (2006-01-02) nor an RFC 3339 time", name, s)}
	}
	return t, nil
}

// parseCount reads a non-negative integer parameter, def when absent.
func parseCount(v url.Values, name string, def, max int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || (max > 0 && n > max) {
		if max > 0 {
			return 0, badRequest{fmt.Errorf("%s %q is not a number from 0 to %d", name, s, max)}
		}
		return 0, badRequest{fmt.Errorf("%s %q is not a number from 0", name, s)}
	}
	return n, nil
}

// status is the HTTP status for an error: 400 for the client's, 404 for
// an unknown transaction, 503 while the store is not connected (its
// PostgreSQL is down), 500 for ours.
func status(err error) int {
	var bad badRequest
	switch {
	case errors.As(err, &bad):
		return http.StatusBadRequest
	case errors.Is(err, activity.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, activity.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
