// Package reports records, as mail flows, what DMARC aggregate reports
// (RFC 9990) and TLS reports (RFC 8460) are made of, and once a day sends
// each domain that asks for them its report, through the queue, signed.
//
// Recording never holds up mail: a session hands its record to a
// buffered channel and goes on; when the channel is full the record is
// dropped and counted. One goroutine appends the records to a file per
// kind and UTC day under the reports directory, one JSON object a line.
// Lines are written as they come but synced only when a day's file is
// closed: a crash of the process loses nothing written, a crash of the
// machine may lose the last unsynced lines, which only makes a report
// count less.
package reports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// Config is what Reports needs.
type Config struct {
	// Dir holds the records (data_dir/reports); made if missing.
	Dir string
	// DMARC and TLS turn each kind on; a kind that is off records
	// nothing and sends nothing.
	DMARC, TLS bool
	// From is the reports' sender (envelope and From field), OrgName the
	// reporting organization's name, Hostname ours: the Submitter of a
	// DMARC report's Subject and the first part of its filename (a TLS
	// report's Submitter is From's domain, as RFC 8460 §5.3 asks).
	From, OrgName, Hostname string
	// Discovery is how DMARC records are found ([auth] dmarc_discovery).
	Discovery dmarc.Discovery
	// Resolver and Signer return the current generation's resolver (for
	// the rua lookups) and DKIM signer (nil: reports go unsigned).
	Resolver func() dmarc.Resolver
	Signer   func() *dkim.Signer
	// Queue takes the reports.
	Queue queue.Enqueuer
	// Buffer is how many records may wait for the writer; default 4096.
	Buffer int
	// Dropped, if set, is told of each record dropped because the
	// writer fell behind.
	Dropped func(kind string)
	// Sent, if set, is told of each report enqueued.
	Sent   func(kind string)
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
}

// The kinds of record, as file names and metrics name them.
const (
	KindDMARC = "dmarc"
	KindTLS   = "tls"
)

// Reports records and sends the reports. Its methods may be called on a
// nil *Reports, which records nothing.
type Reports struct {
	cfg     Config
	records chan stamped
	seal    chan sealRequest
	done    chan struct{}
	started atomic.Bool
	sendMu  sync.Mutex // one SendDue at a time
	stop    context.CancelFunc
	timer   sync.WaitGroup // the daily timer's goroutine
}

// New makes Reports from cfg; nothing is recorded until Start.
func New(cfg Config) *Reports {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reports{cfg: cfg, records: make(chan stamped, cfg.Buffer), seal: make(chan sealRequest), done: make(chan struct{})}
}

// Start makes the reports directory and starts the writer, and a timer
// that sends the reports of each day past once the UTC day is over
// (check says how often it looks; 0 means every minute).
func (r *Reports) Start(ctx context.Context, check time.Duration) error {
	if err := os.MkdirAll(r.cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	if check <= 0 {
		check = time.Minute
	}
	ctx, r.stop = context.WithCancel(ctx)
	r.started.Store(true)
	go r.write(ctx)
	r.timer.Go(func() {
		t := time.NewTicker(check)
		defer t.Stop()
		for {
			if err := r.SendDue(ctx, r.cfg.Now()); err != nil {
				r.cfg.Logger.Warn("reports: sending failed; retried later", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return nil
}

// Close stops the timer, and the writer, which syncs and closes its
// files. Records made after are dropped.
func (r *Reports) Close() {
	if r == nil || !r.started.Load() {
		return
	}
	r.stop()
	r.timer.Wait()
	<-r.done
}

// stamped is a record with the UTC day it was made on.
type stamped struct {
	kind, day string
	rec       any // *DMARCRecord or *TLSRecord
}

// record hands rec to the writer without waiting.
func (r *Reports) record(kind string, rec any) {
	if !r.started.Load() {
		return
	}
	select {
	case r.records <- stamped{kind, day(r.cfg.Now()), rec}:
	default:
		if r.cfg.Dropped != nil {
			r.cfg.Dropped(kind)
		}
	}
}

// day is the UTC day of t, as file names have it.
func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// sealRequest asks the writer to close the files of the days before day
// and rename them for sending.
type sealRequest struct {
	before string
	done   chan struct{}
}

// write appends each record to its kind's file of the day it was made
// on, and seals days on request. A record made on a day sealed already
// (it was on its way at midnight) counts in the first day not sealed.
func (r *Reports) write(ctx context.Context) {
	defer close(r.done)
	files := map[string]*os.File{} // by file name
	closeFile := func(name string) {
		f := files[name]
		if err := f.Sync(); err != nil {
			r.cfg.Logger.Warn("reports: syncing a record file failed", "file", name, "err", err)
		}
		f.Close()
		delete(files, name)
	}
	defer func() {
		for name := range files {
			closeFile(name)
		}
	}()
	sealed := "" // days before this one are sealed
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-r.seal:
			// What was recorded before the request was made goes
			// into the files first.
			for drained := false; !drained; {
				select {
				case rec := <-r.records:
					r.writeRecord(files, rec, sealed)
				default:
					drained = true
				}
			}
			for name := range files {
				if fileDay(name) < req.before {
					closeFile(name)
				}
			}
			r.sealFiles(req.before)
			sealed = max(sealed, req.before)
			close(req.done)
		case rec := <-r.records:
			r.writeRecord(files, rec, sealed)
		}
	}
}

// writeRecord appends rec to its file, opening it if needed.
func (r *Reports) writeRecord(files map[string]*os.File, rec stamped, sealed string) {
	name := rec.kind + "-" + max(rec.day, sealed) + ".jsonl"
	f := files[name]
	if f == nil {
		var err error
		f, err = os.OpenFile(filepath.Join(r.cfg.Dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			r.cfg.Logger.Warn("reports: cannot open a record file; record dropped", "err", err)
			return
		}
		files[name] = f
	}
	line, err := json.Marshal(rec.rec)
	if err == nil {
		_, err = f.Write(append(line, '\n'))
	}
	if err != nil {
		r.cfg.Logger.Warn("reports: writing a record failed", "file", name, "err", err)
	}
}

// fileDay is the day of a record file name, "kind-YYYY-MM-DD.jsonl[.due]".
func fileDay(name string) string {
	_, rest, _ := strings.Cut(name, "-")
	d, _, _ := strings.Cut(rest, ".")
	return d
}

// sealFiles renames the record files of days before before to .due: they
// are complete, and are sent and removed by SendDue.
func (r *Reports) sealFiles(before string) {
	entries, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		r.cfg.Logger.Warn("reports: reading the reports directory failed", "err", err)
		return
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasSuffix(name, ".jsonl") && fileDay(name) < before {
			p := filepath.Join(r.cfg.Dir, name)
			if err := os.Rename(p, p+".due"); err != nil {
				r.cfg.Logger.Warn("reports: sealing a record file failed", "err", err)
			}
		}
	}
}

// SendDue sends the reports of every day before now's UTC day that is
// recorded and not sent yet: the files are sealed, each one's reports
// enqueued, and the file removed once all were. A report that could not
// be enqueued leaves its file for the next time, which then sends its
// other reports again, under the same Report-ID (RFC 9990 §3.1.1 asks
// for that: the receiver can tell the copy).
func (r *Reports) SendDue(ctx context.Context, now time.Time) error {
	if r == nil || !r.started.Load() {
		return nil
	}
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	req := sealRequest{before: day(now), done: make(chan struct{})}
	select {
	case r.seal <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return errors.New("reports: closed")
	}
	<-req.done
	entries, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".jsonl.due") {
			continue
		}
		p := filepath.Join(r.cfg.Dir, name)
		d, err := time.Parse("2006-01-02", fileDay(name))
		if err != nil {
			continue
		}
		kind, _, _ := strings.Cut(name, "-")
		switch {
		case kind == KindDMARC && r.cfg.DMARC:
			err = r.sendDMARC(ctx, p, d)
		case kind == KindTLS && r.cfg.TLS:
			err = r.sendTLS(ctx, p, d)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// readLines decodes a record file, one value of T a line; a line that
// does not decode (the last one, cut short by a crash) is skipped.
func readLines[T any](path string) ([]T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []T
	for line := range strings.SplitSeq(string(data), "\n") {
		var v T
		if line != "" && json.Unmarshal([]byte(line), &v) == nil {
			out = append(out, v)
		}
	}
	return out, nil
}

// sortedKeys is m's keys in order, so that reports come out the same
// for the same records.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
