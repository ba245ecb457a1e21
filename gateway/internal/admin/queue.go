package admin

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// Queue is what the queue endpoints operate on: the gateway's queue. It is
// declared here, as admin uses it, so that admin needs only the queue's
// types and not its store. Each method returns queue.ErrNotFound (maybe
// wrapped) for an ID the queue does not hold.
type Queue interface {
	// List summarises every message in the queue, held ones included.
	List(ctx context.Context) ([]queue.Summary, error)
	// Get returns one message, recipients, attempts and data.
	Get(ctx context.Context, id string) (*queue.Message, error)
	// Retry makes the message due now.
	Retry(ctx context.Context, id string) error
	// Delete removes the message without notifying anyone.
	Delete(ctx context.Context, id string) error
	// Hold keeps the message from being tried until Release, which
	// makes it due now.
	Hold(ctx context.Context, id string) error
	Release(ctx context.Context, id string) error
}

// QueueMessage is one queued message as GET /admin/queue/{id} shows it:
// its summary, every recipient with its state, and its header fields
// (never the body, which is the sender's and the recipient's business).
type QueueMessage struct {
	queue.Summary
	// Recipients are all of them, delivered and failed ones too, with
	// their last reply (the summary lists only the pending addresses).
	Recipients []QueueRecipient `json:"recipients"`
	MayBounce  bool             `json:"may_bounce"`
	UTF8       bool             `json:"utf8"`
	RequireTLS bool             `json:"require_tls"`
	Warned     bool             `json:"warned"`
	ClientIP   string           `json:"client_ip"`
	Helo       string           `json:"helo"`
	SessionID  string           `json:"session_id"`
	// Header holds the header fields as they leave, one string per
	// field, continuation lines joined with their CRLF.
	Header []string `json:"header"`
}

// QueueRecipient is one recipient of a queued message.
type QueueRecipient struct {
	Orig   string       `json:"orig"`
	To     string       `json:"to"`
	Status queue.Status `json:"status"`
	Reply  string       `json:"reply"`
	Remote string       `json:"remote"`
}

// queueAnswer is the body of an answer to a queue operation.
type queueAnswer struct {
	OK      bool   `json:"ok"`
	ID      string `json:"id,omitempty"`
	Retried *int   `json:"retried,omitempty"` // POST /admin/queue/retry
	Error   string `json:"error,omitempty"`
}

// queueEndpoints adds to mux:
//
//	GET    /admin/queue                  the messages' summaries, oldest first; filters ?domain= ?sender= ?kind= ?held=true|false
//	GET    /admin/queue/{id}             one message: summary, every recipient, header fields
//	POST   /admin/queue/{id}/retry       make it due now
//	POST   /admin/queue/{id}/hold        stop trying it until released
//	POST   /admin/queue/{id}/release     undo hold: due now
//	DELETE /admin/queue/{id}             drop it, notifying no one
//	POST   /admin/queue/retry            make every message not held due now (postqueue -f)
//
// An ID the queue does not hold gets 404, a filter that makes no sense
// 400, a failure of the queue 500; each with {"ok": false, "error": ...}.
func queueEndpoints(mux *http.ServeMux, q Queue) {
	if q == nil {
		none := func(w http.ResponseWriter, _ *http.Request) {
			queueError(w, http.StatusServiceUnavailable, errors.New("this gateway has no queue"))
		}
		mux.HandleFunc("/admin/queue", none)
		mux.HandleFunc("/admin/queue/", none)
		return
	}
	mux.HandleFunc("GET /admin/queue", func(w http.ResponseWriter, r *http.Request) {
		keep, err := queueFilter(r)
		if err != nil {
			queueError(w, http.StatusBadRequest, err)
			return
		}
		all, err := q.List(r.Context())
		if err != nil {
			queueError(w, http.StatusInternalServerError, err)
			return
		}
		list := []queue.Summary{}
		for _, s := range all {
			if keep(s) {
				list = append(list, s)
			}
		}
		// Oldest first, as the operator reads a queue.
		slices.SortStableFunc(list, func(a, b queue.Summary) int {
			return cmp.Or(a.Arrived.Compare(b.Arrived), strings.Compare(a.ID, b.ID))
		})
		writeJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("GET /admin/queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		m, err := q.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			queueError(w, errorStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, describe(m))
	})
	one := func(op func(context.Context, string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			// Once asked for, an operation is not left half done because
			// the caller hung up.
			if err := op(context.WithoutCancel(r.Context()), id); err != nil {
				queueError(w, errorStatus(err), err)
				return
			}
			writeJSON(w, http.StatusOK, queueAnswer{OK: true, ID: id})
		}
	}
	mux.HandleFunc("POST /admin/queue/{id}/retry", one(q.Retry))
	mux.HandleFunc("POST /admin/queue/{id}/hold", one(q.Hold))
	mux.HandleFunc("POST /admin/queue/{id}/release", one(q.Release))
	mux.HandleFunc("DELETE /admin/queue/{id}", one(q.Delete))
	mux.HandleFunc("POST /admin/queue/retry", func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithoutCancel(r.Context())
		all, err := q.List(ctx)
		if err != nil {
			queueError(w, http.StatusInternalServerError, err)
			return
		}
		n := 0
		for _, s := range all {
			if s.Held {
				continue // held is the operator's word: only release undoes it
			}
			switch err := q.Retry(ctx, s.ID); {
			case errors.Is(err, queue.ErrNotFound):
				// delivered or deleted since List: nothing to retry
			case err != nil:
				queueError(w, http.StatusInternalServerError, err)
				return
			default:
				n++
			}
		}
		writeJSON(w, http.StatusOK, queueAnswer{OK: true, Retried: &n})
	})
}

// queueFilter returns what keeps a summary in GET /admin/queue's answer.
func queueFilter(r *http.Request) (func(queue.Summary) bool, error) {
	v := r.URL.Query()
	domain := strings.TrimSuffix(v.Get("domain"), ".")
	if d, err := address.Domain(domain); err == nil {
		domain = d // as queue.Message.Domain names it: A-labels
	}
	sender := v.Get("sender")
	kind := queue.Kind(v.Get("kind"))
	switch kind {
	case "", queue.Forward, queue.DSN, queue.Notice, queue.Report:
	default:
		return nil, errors.New("kind " + strconv.Quote(string(kind)) + ": not forward, dsn, notice or report")
	}
	var held *bool
	if h := v.Get("held"); h != "" {
		b, err := strconv.ParseBool(h)
		if err != nil {
			return nil, errors.New("held " + strconv.Quote(h) + ": not true or false")
		}
		held = &b
	}
	return func(s queue.Summary) bool {
		return (domain == "" || strings.EqualFold(s.Domain, domain)) &&
			(sender == "" || strings.EqualFold(s.Sender, sender)) &&
			(kind == "" || s.Kind == kind) &&
			(held == nil || s.Held == *held)
	}, nil
}

// describe is m as GET /admin/queue/{id} shows it.
func describe(m *queue.Message) QueueMessage {
	d := QueueMessage{
		Summary:    m.Summary(),
		Recipients: []QueueRecipient{},
		MayBounce:  m.MayBounce,
		UTF8:       m.UTF8,
		RequireTLS: m.RequireTLS,
		Warned:     m.Warned,
		ClientIP:   m.ClientIP,
		Helo:       m.Helo,
		SessionID:  m.SessionID,
		Header:     []string{},
	}
	for _, r := range m.Recipients {
		d.Recipients = append(d.Recipients, QueueRecipient{Orig: r.Orig, To: r.To, Status: r.Status, Reply: r.Reply, Remote: r.Remote})
	}
	header, _ := message.Split(m.Data)
	for _, f := range message.Fields(header) {
		d.Header = append(d.Header, strings.TrimSuffix(string(f.Raw), "\r\n"))
	}
	return d
}

func errorStatus(err error) int {
	if errors.Is(err, queue.ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

func queueError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, queueAnswer{Error: err.Error()})
}
