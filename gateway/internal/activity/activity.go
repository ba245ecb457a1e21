// Package activity keeps the story of every SMTP transaction for the
// console (issue 13): who sent what to whom, what each recipient's route
// and outcome was and who decided it, the authentication results, the
// plugins' verdicts and the destination's reply. Records are written in
// batches off the session's path, into an embedded SQLite database or
// a PostgreSQL database that several gateway nodes share, and kept for
// the retention.
//
// This file is the package's contract: the types the session fills in
// and the console and API read. The store is in the other files.
package activity

import "time"

// Record is one transaction.
type Record struct {
	// ID names the transaction in the console and the API: the session's
	// id and the transaction's number in it ("3f2a9c01d4e5-1").
	ID string `json:"id"`
	// Node is the gateway node that took the transaction ([cluster]
	// node): several may write to one store.
	Node string `json:"node"`
	// User is the submission service's user who sent the message
	// (issue 15); "" for mail that arrived at the MX.
	User       string        `json:"user"`
	Time       time.Time     `json:"time"` // when the transaction ended
	Duration   time.Duration `json:"duration_ns"`
	SessionID  string        `json:"session"`
	ClientIP   string        `json:"client_ip"`
	ClientName string        `json:"client_name"` // forward-confirmed reverse DNS, "" if none
	Helo       string        `json:"helo"`
	TLS        bool          `json:"tls"`
	From       string        `json:"from"` // as the client gave it; "" for <>
	// Outcome is what became of the message: forwarded, queued, dropped,
	// refused, tempfailed or none (the transaction ended before DATA was
	// answered), as the log line's outcome.
	Outcome   string `json:"outcome"`
	DecidedBy string `json:"decided_by"` // host, destination, queue or plugin:NAME
	Reply     string `json:"reply"`      // the reply to DATA or to a refused MAIL: "550 5.7.1 ..."
	// Recipients are every recipient the client asked for, in order.
	Recipients []Recipient `json:"recipients"`
	// Auth is the message's authentication results as our
	// Authentication-Results field gives them (spf=pass ... dkim=... dmarc=...).
	SPF   string `json:"spf"`   // pass, fail, ...; "" when not checked
	DKIM  string `json:"dkim"`  // e.g. "pass (example.org)"; "" when not checked
	DMARC string `json:"dmarc"` // pass, fail, none, ...; "" when not checked
	// Score and Symbols are the plugins' findings added up.
	Score   float64   `json:"score"`
	Symbols []string  `json:"symbols"` // "SYMBOL=score"
	Plugins []Verdict `json:"plugins"`
	// Relay is the destination host the message left for in session, and
	// QueueIDs the queued copies.
	Relay     string   `json:"relay"`
	QueueIDs  []string `json:"queue_ids"`
	Size      int      `json:"size"`
	MessageID string   `json:"message_id"`
	Subject   string   `json:"subject"` // "" when console.record_subject is off
}

// Recipient is one recipient of a transaction.
type Recipient struct {
	Address      string   `json:"address"`      // as the client gave it
	Destinations []string `json:"destinations"` // where it was forwarded or queued
	// Outcome is forwarded, queued, dropped, refused or tempfailed.
	Outcome   string `json:"outcome"`
	DecidedBy string `json:"decided_by"`
	Reply     string `json:"reply"` // the reply to its RCPT when refused
}

// Verdict is one plugin's answer at one stage.
type Verdict struct {
	Plugin   string        `json:"plugin"`
	Stage    string        `json:"stage"`
	Action   string        `json:"action"`
	Failed   bool          `json:"failed"`
	Duration time.Duration `json:"duration_ns"`
}

// Recorder takes records from the sessions. Record must never block or
// fail the session: a record that cannot be kept (the writer is behind,
// the disk is full, the database locked) is dropped and counted.
type Recorder interface {
	Record(Record)
}

// Filter selects transactions, newest first. Zero fields select all.
type Filter struct {
	Address   string    // a recipient address or domain (the part after @), or the sender's
	Sender    string    // the sender address or domain
	Outcome   string    // one of Record.Outcome's words
	DecidedBy string    // host, destination, queue, plugin, or plugin:NAME
	Since     time.Time // inclusive
	Until     time.Time // exclusive
	Text      string    // in the subject or the message-id
	Node      string    // the node that took it
	User      string    // the submission user who sent it
	Limit     int       // default 50, at most 500
	Offset    int
}
