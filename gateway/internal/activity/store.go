package activity

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver: pure Go, so the binary stays static
)

// ErrNotFound is Get's error for an id the store does not hold.
var ErrNotFound = errors.New("activity: no such transaction")

// Options are the store's settings; zero values take the defaults.
type Options struct {
	Retention time.Duration // records older than this are deleted; 0 keeps them
	Logger    *slog.Logger
	Metrics   *Metrics // may be nil

	// Now is the clock the retention reads; time.Now by default.
	Now func() time.Time
	// PruneEvery is how often the retention job runs after the one at
	// Open; an hour by default.
	PruneEvery time.Duration
	// Pending is how many records may wait for the writer before more
	// are dropped; 8192 by default.
	Pending int
	// BatchSize and FlushEvery bound a batch: it is written when it has
	// BatchSize records or is FlushEvery old; 256 and 200 ms by default.
	BatchSize  int
	FlushEvery time.Duration
}

// Store keeps records in an SQLite database. Record hands a record to a
// writer goroutine, which writes them in batches, one transaction each:
// a session never waits for the disk.
type Store struct {
	db   *sql.DB
	opts Options
	in   chan Record
	done chan struct{} // closed by Close: the writer flushes and stops
	quit chan struct{} // closed by the writer when it has stopped
	once sync.Once

	written, droppedFull, droppedError atomic.Uint64
	lastLogged                         time.Time // of a write error; the writer's own
}

// Counts are what became of the records given to Record.
type Counts struct {
	Written      uint64 // in the database
	DroppedFull  uint64 // the writer was behind (or closed)
	DroppedError uint64 // the database refused the batch (full disk, locked, ...)
}

// migrations make the schema: schema_version says how many ran. A new
// version appends one; none is ever edited.
var migrations = []string{
	`CREATE TABLE transactions (
		n          INTEGER PRIMARY KEY,
		id         TEXT NOT NULL UNIQUE,
		time       INTEGER NOT NULL, -- Unix nanoseconds
		sender     TEXT NOT NULL,    -- lower case
		sender_dom TEXT NOT NULL,
		outcome    TEXT NOT NULL,
		decided_by TEXT NOT NULL,
		message_id TEXT NOT NULL,
		subject    TEXT NOT NULL,
		data       TEXT NOT NULL     -- the whole Record as JSON
	);
	CREATE INDEX transactions_time ON transactions(time);
	CREATE TABLE recipients (
		txn        INTEGER NOT NULL, -- transactions.n
		address    TEXT NOT NULL,    -- lower case
		domain     TEXT NOT NULL,
		outcome    TEXT NOT NULL,
		decided_by TEXT NOT NULL
	);
	CREATE INDEX recipients_txn ON recipients(txn);`,
}

// Open opens (or creates) the database at path, brings its schema up to
// date, deletes what is past the retention and starts the writer.
func Open(path string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PruneEvery <= 0 {
		opts.PruneEvery = time.Hour
	}
	if opts.Pending <= 0 {
		opts.Pending = 8192
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = 200 * time.Millisecond
	}
	// WAL lets the console read while the writer writes. The busy
	// timeout is short: the writer would rather drop a batch than hold
	// records while another process holds the database.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=busy_timeout(100)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("activity database %s: %w", path, err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("activity database %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts, in: make(chan Record, opts.Pending),
		done: make(chan struct{}), quit: make(chan struct{})}
	s.prune()
	if opts.Metrics != nil {
		opts.Metrics.store.Store(s)
	}
	go s.write()
	return s, nil
}

func migrate(db *sql.DB) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	var v int
	switch err := tx.QueryRow(`SELECT version FROM schema_version`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.Exec(`INSERT INTO schema_version VALUES (0)`); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this sluice knows (%d)", v, len(migrations))
	}
	for _, m := range migrations[v:] {
		if _, err := tx.Exec(m); err != nil {
			return fmt.Errorf("migrating the schema: %w", err)
		}
	}
	if _, err := tx.Exec(`UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
		return err
	}
	return tx.Commit()
}

// Record hands r to the writer. It never blocks: when the writer is
// behind, or the store closed, r is dropped and counted.
func (s *Store) Record(r Record) {
	select {
	case <-s.done:
		s.droppedFull.Add(1)
		return
	default:
	}
	select {
	case s.in <- r:
	default:
		s.droppedFull.Add(1)
	}
}

// Counts says how many records were written and dropped so far.
func (s *Store) Counts() Counts {
	return Counts{Written: s.written.Load(), DroppedFull: s.droppedFull.Load(), DroppedError: s.droppedError.Load()}
}

// Close writes what is pending and closes the database.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.done) })
	<-s.quit
	return s.db.Close()
}

// write is the writer: it gathers records into batches and writes each
// in one transaction, and runs the retention job.
func (s *Store) write() {
	defer close(s.quit)
	flush := time.NewTicker(s.opts.FlushEvery)
	defer flush.Stop()
	prune := time.NewTicker(s.opts.PruneEvery)
	defer prune.Stop()
	batch := make([]Record, 0, s.opts.BatchSize)
	for {
		select {
		case r := <-s.in:
			batch = append(batch, r)
			if len(batch) >= s.opts.BatchSize {
				batch = s.flush(batch)
			}
		case <-flush.C:
			batch = s.flush(batch)
		case <-prune.C:
			s.prune()
		case <-s.done:
			for {
				select {
				case r := <-s.in:
					batch = append(batch, r)
					if len(batch) >= s.opts.BatchSize {
						batch = s.flush(batch)
					}
					continue
				default:
				}
				break
			}
			s.flush(batch)
			return
		}
	}
}

// flush writes batch and returns it emptied. A batch the database
// refuses is dropped, counted, and logged at most once in 10 seconds:
// a full disk must not fill the log too.
func (s *Store) flush(batch []Record) []Record {
	if len(batch) == 0 {
		return batch
	}
	if err := s.insert(batch); err != nil {
		s.droppedError.Add(uint64(len(batch)))
		if now := time.Now(); now.Sub(s.lastLogged) >= 10*time.Second {
			s.lastLogged = now
			s.opts.Logger.Error("activity records dropped: the database refused them", "records", len(batch), "err", err)
		}
	} else {
		s.written.Add(uint64(len(batch)))
	}
	clear(batch)
	return batch[:0]
}

func (s *Store) insert(batch []Record) error {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	txn, err := tx.Prepare(`INSERT OR IGNORE INTO transactions
		(id, time, sender, sender_dom, outcome, decided_by, message_id, subject, data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer txn.Close()
	rcpt, err := tx.Prepare(`INSERT INTO recipients (txn, address, domain, outcome, decided_by) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer rcpt.Close()
	for _, r := range batch {
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		from := strings.ToLower(r.From)
		res, err := txn.Exec(r.ID, r.Time.UnixNano(), from, domain(from), r.Outcome, r.DecidedBy, r.MessageID, r.Subject, string(data))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // already recorded
		}
		n, err := res.LastInsertId()
		if err != nil {
			return err
		}
		for _, rc := range r.Recipients {
			a := strings.ToLower(rc.Address)
			if _, err := rcpt.Exec(n, a, domain(a), rc.Outcome, rc.DecidedBy); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// prune deletes the records past the retention.
func (s *Store) prune() {
	if s.opts.Retention <= 0 {
		return
	}
	cutoff := s.opts.Now().Add(-s.opts.Retention).UnixNano()
	if err := s.deleteBefore(cutoff); err != nil {
		s.opts.Logger.Error("activity retention failed", "err", err)
	}
}

func (s *Store) deleteBefore(cutoff int64) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`DELETE FROM recipients WHERE txn IN (SELECT n FROM transactions WHERE time < ?)`, cutoff); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM transactions WHERE time < ?`, cutoff); err != nil {
		return err
	}
	return tx.Commit()
}

// domain is the part of an address after its last @.
func domain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}
