package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
)

// maxLimit is the most transactions one API answer holds, and maxBuckets
// the most buckets one stats answer holds.
const (
	maxLimit   = 500
	maxBuckets = 1000
)

// transactionsAnswer is GET /api/v1/transactions' answer.
type transactionsAnswer struct {
	Total        int               `json:"total"`
	Transactions []activity.Record `json:"transactions"`
}

// statsAnswer is GET /api/v1/stats' answer.
type statsAnswer struct {
	Since   time.Time         `json:"since"`
	Until   time.Time         `json:"until"`
	Step    string            `json:"step"`
	Buckets []activity.Bucket `json:"buckets"`
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

// api adds the JSON API to mux:
//
//	GET /api/v1/transactions        {total, transactions}; the list's filters, limit (default 50, at most 500), offset
//	GET /api/v1/transactions/{id}   one transaction; 404 if unknown
//	GET /api/v1/stats               counts by outcome per step (default 1h) from since (default until-24h) to until (default now)
//
// Errors are {"error": "..."} with 400 for bad parameters, 404 for an
// unknown transaction or endpoint, 500 for a failure of the store.
func (s *server) api(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/transactions", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f, err := parseFilter(q)
		if err == nil {
			f.Limit, err = parseCount(q, "limit", pageSize, maxLimit)
		}
		if err == nil {
			f.Offset, err = parseCount(q, "offset", 0, 0)
		}
		if err != nil {
			s.apiFail(w, err)
			return
		}
		recs, total, err := s.c.Store.Query(r.Context(), f)
		if err != nil {
			s.apiFail(w, err)
			return
		}
		if recs == nil {
			recs = []activity.Record{}
		}
		writeJSON(w, http.StatusOK, transactionsAnswer{Total: total, Transactions: recs})
	})
	mux.HandleFunc("GET /api/v1/transactions/{id}", func(w http.ResponseWriter, r *http.Request) {
		rec, err := s.c.Store.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			s.apiFail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rec)
	})
	mux.HandleFunc("GET /api/v1/stats", func(w http.ResponseWriter, r *http.Request) {
		a, err := s.statsParams(r)
		if err != nil {
			s.apiFail(w, err)
			return
		}
		step, _ := time.ParseDuration(a.Step)
		a.Buckets, err = s.c.Store.Stats(r.Context(), a.Since, a.Until, step)
		if err != nil {
			s.apiFail(w, err)
			return
		}
		if a.Buckets == nil {
			a.Buckets = []activity.Bucket{}
		}
		writeJSON(w, http.StatusOK, a)
	})
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError{"no such endpoint: " + r.Method + " " + r.URL.Path})
	})
}

// statsParams reads since, until and step.
func (s *server) statsParams(r *http.Request) (statsAnswer, error) {
	q := r.URL.Query()
	var a statsAnswer
	var err error
	if a.Since, err = parseTime("since", q.Get("since"), false); err != nil {
		return a, err
	}
	if a.Until, err = parseTime("until", q.Get("until"), true); err != nil {
		return a, err
	}
	step := time.Hour
	if v := q.Get("step"); v != "" {
		if step, err = time.ParseDuration(v); err != nil || step < time.Minute {
			return a, badRequest{fmt.Errorf("step %q is not a duration of at least 1m (1h, 24h)", v)}
		}
	}
	if a.Until.IsZero() {
		a.Until = s.c.Now().UTC()
	}
	if a.Since.IsZero() {
		a.Since = a.Until.Add(-24 * time.Hour)
	}
	if !a.Since.Before(a.Until) {
		return a, badRequest{errors.New("since must be before until")}
	}
	if a.Until.Sub(a.Since)/step > maxBuckets {
		return a, badRequest{fmt.Errorf("%s from since to until in steps of %s is more than %d buckets", a.Until.Sub(a.Since), step, maxBuckets)}
	}
	a.Step = step.String()
	return a, nil
}

func (s *server) apiFail(w http.ResponseWriter, err error) {
	code := status(err)
	if code == http.StatusInternalServerError {
		s.c.Logger.Error("console: reading the activity store", "err", err)
	}
	writeJSON(w, code, apiError{err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // as the pages: mail's metadata
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
