package activity

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// ErrNotFound is Get's error for an id the store does not hold.
var ErrNotFound = errors.New("activity: no such transaction")

// ErrUnavailable is the error of Query, Get and Stats while a PostgreSQL
// store has not connected or migrated yet (the server is down, the login
// refused, the schema newer than this sluice); the cause follows it.
var ErrUnavailable = errors.New("activity store unavailable")

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
	// RetryEvery is the longest wait between attempts to reach a
	// PostgreSQL store that is down at Open; 5 s by default.
	RetryEvery time.Duration
}

// Store keeps records in an SQLite database or in PostgreSQL. Record
// hands a record to a writer goroutine, which writes them in batches,
// one transaction each: a session never waits for the database.
type Store struct {
	db   *sql.DB
	d    *dialect
	name string // the file, or the URL without its password: for errors
	opts Options
	in   chan Record
	done chan struct{} // closed by Close: the writer flushes and stops
	quit chan struct{} // closed by the writer when it has stopped
	once sync.Once

	// down is nil once the schema is up to date; until then, why not
	// (PostgreSQL only: SQLite's Open fails instead).
	down      atomic.Pointer[error]
	connected chan struct{}      // closed by connect when it gave up or succeeded
	stop      context.CancelFunc // ends connect's attempt at Close
	stopCtx   context.Context

	written, droppedFull, droppedError atomic.Uint64
	lastLogged                         time.Time // of a write error; the writer's own
}

// Counts are what became of the records given to Record.
type Counts struct {
	Written      uint64 // in the database
	DroppedFull  uint64 // the writer was behind (or closed)
	DroppedError uint64 // the database refused the batch (full disk, locked, down, ...)
}

// isPostgres says whether a [console] database names PostgreSQL (a
// postgres:// or postgresql:// URL) rather than an SQLite file, as
// config.ConsoleDatabaseIsURL does.
func isPostgres(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// Open opens the store: PostgreSQL for a postgres:// or postgresql://
// URL, else the SQLite database at that path (created if need be). It
// brings the schema up to date, deletes what is past the retention and
// starts the writer.
//
// SQLite is part of this process: Open fails if it cannot be opened.
// PostgreSQL is another machine's, which may be down when the gateway
// starts: Open fails only for a URL it cannot parse, and connects and
// migrates in the background, retrying, while records are dropped and
// counted and Query, Get and Stats answer ErrUnavailable.
func Open(database string, opts Options) (*Store, error) {
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
	if opts.RetryEvery <= 0 {
		opts.RetryEvery = 5 * time.Second
	}
	s := &Store{opts: opts, in: make(chan Record, opts.Pending),
		done: make(chan struct{}), quit: make(chan struct{}), connected: make(chan struct{})}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	var err error
	if isPostgres(database) {
		s.d = &postgres
		s.name, s.db, err = openPostgres(database)
		if err != nil {
			s.stop()
			return nil, err
		}
		down := fmt.Errorf("%w: connecting to %s", ErrUnavailable, s.name)
		s.down.Store(&down)
		go s.connect()
	} else {
		s.d, s.name = &sqlite, database
		if s.db, err = openSQLite(database); err != nil {
			s.stop()
			return nil, err
		}
		if err := migrate(context.Background(), s.db, s.d); err != nil {
			s.stop()
			s.db.Close()
			return nil, fmt.Errorf("activity database %s: %w", database, err)
		}
		close(s.connected)
		s.prune()
	}
	if opts.Metrics != nil {
		opts.Metrics.store.Store(s)
	}
	go s.write()
	return s, nil
}

func openSQLite(path string) (*sql.DB, error) {
	// WAL lets the console read while the writer writes. The busy
	// timeout is short: the writer would rather drop a batch than hold
	// records while another process holds the database.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=busy_timeout(100)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("activity database %s: %w", path, err)
	}
	return db, nil
}

// connect brings a PostgreSQL store's schema up to date, retrying until
// it can, and then opens the store for writing and reading. A schema
// newer than this sluice is not retried: the store stays unavailable
// and says why.
func (s *Store) connect() {
	defer close(s.connected)
	wait := 100 * time.Millisecond
	var lastLogged time.Time
	for {
		ctx, cancel := context.WithTimeout(s.stopCtx, 30*time.Second)
		err := migrate(ctx, s.db, s.d)
		cancel()
		if err == nil {
			s.down.Store(nil)
			s.opts.Logger.Info("activity store connected", "database", s.name)
			s.prune()
			return
		}
		down := fmt.Errorf("%w: %s: %w", ErrUnavailable, s.name, err)
		s.down.Store(&down)
		if errors.Is(err, errSchemaTooNew) {
			s.opts.Logger.Error("activity store not used: records are dropped", "err", down)
			return
		}
		if now := time.Now(); now.Sub(lastLogged) >= time.Minute {
			lastLogged = now
			s.opts.Logger.Error("activity store not ready, retrying: records are dropped meanwhile", "err", down)
		}
		select {
		case <-s.done:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, s.opts.RetryEvery)
	}
}

// unavailable is why the store cannot be used yet, or nil.
func (s *Store) unavailable() error {
	if e := s.down.Load(); e != nil {
		return *e
	}
	return nil
}

// readTimeout bounds a read of the console's, as writeTimeout a batch: a
// database that does not answer must not hold a page until the browser
// gives up.
const readTimeout = 10 * time.Second

// reading returns ctx bounded by readTimeout, or the store's outage.
func (s *Store) reading(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := s.unavailable(); err != nil {
		return ctx, func() {}, err
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	return ctx, cancel, nil
}

// readFailed marks a read that failed because the database is out of
// reach (no connection, the connection lost, no answer in time) as
// ErrUnavailable, as while the store connects: the console says 503, a
// failure to retry, not 500, a fault of ours.
func (s *Store) readFailed(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !outOfReach(err) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, s.name, err)
}

// writeTimeout bounds the writing of a batch: a database that does not
// answer is one that refuses.
const writeTimeout = 10 * time.Second

var errSchemaTooNew = errors.New("the schema is newer than this sluice knows: upgrade sluice")

// migrate runs the migrations the database has not had yet, in one
// transaction: schema_version says how many ran.
func migrate(ctx context.Context, db *sql.DB, d *dialect) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if d.lock != "" {
		// Nodes starting together: one migrates, the others wait for
		// it and then find nothing to do.
		if _, err := tx.ExecContext(ctx, d.lock); err != nil {
			return err
		}
	}
	var exists bool
	if err := tx.QueryRowContext(ctx, d.hasVersion).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE schema_version (version INTEGER NOT NULL)`); err != nil {
			return err
		}
	}
	var v int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if v > len(d.migrations) {
		return fmt.Errorf("%w (version %d; this sluice knows %d)", errSchemaTooNew, v, len(d.migrations))
	}
	if v == len(d.migrations) {
		// Up to date: nothing written, so a role that may only read and
		// write the records is enough.
		return tx.Commit()
	}
	for _, m := range d.migrations[v:] {
		if _, err := tx.ExecContext(ctx, m); err != nil {
			return fmt.Errorf("migrating the schema: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.rebind(`UPDATE schema_version SET version = ?`), len(d.migrations)); err != nil {
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
	s.stop()
	<-s.connected
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
	add := func(r Record) {
		batch = append(batch, r)
		if len(batch) >= s.opts.BatchSize {
			batch = s.flush(batch)
		}
	}
	for {
		select {
		case r := <-s.in:
			add(r)
		case <-flush.C:
			batch = s.flush(batch)
		case <-prune.C:
			s.prune()
		case <-s.done:
			// Take what is pending, then the last batch.
			for len(s.in) > 0 {
				add(<-s.in)
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
	err := s.unavailable()
	if err == nil {
		err = s.insert(batch)
	}
	if err != nil {
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

// insert writes batch in one transaction, a few statements of many rows
// each: a round trip per row would cost PostgreSQL's writer more than
// the rows do. A database that does not answer within writeTimeout is as
// one that refuses: the records are dropped, and the writer takes the
// next batch.
func (s *Store) insert(batch []Record) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	txns := make([][]any, 0, len(batch))
	for i, r := range batch {
		r = r.clean()
		batch[i] = r
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		from := strings.ToLower(r.From)
		txns = append(txns, []any{r.ID, r.Node, r.User, r.Time.UnixNano(), from, domain(from), r.Outcome, r.DecidedBy, r.MessageID, r.Subject, string(data)})
	}
	// A transaction already recorded is left as it is, and its
	// recipients are not added again: only the new rows come back.
	added := map[string]int64{}
	err = s.insertRows(ctx, tx, `INSERT INTO transactions
		(id, node, submitter, time, sender, sender_dom, outcome, decided_by, message_id, subject, data) VALUES `,
		` ON CONFLICT (id) DO NOTHING RETURNING id, n`, txns, func(rows *sql.Rows) error {
			var id string
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			added[id] = n
			return nil
		})
	if err != nil {
		return err
	}
	var rcpts [][]any
	for _, r := range batch {
		n, ok := added[r.ID]
		if !ok {
			continue
		}
		delete(added, r.ID) // an id twice in the batch: the first was kept
		for _, rc := range r.Recipients {
			a := strings.ToLower(rc.Address)
			rcpts = append(rcpts, []any{n, a, domain(a), rc.Outcome, rc.DecidedBy})
		}
	}
	err = s.insertRows(ctx, tx, `INSERT INTO recipients (txn, address, domain, outcome, decided_by) VALUES `, ``, rcpts, nil)
	if err != nil {
		return err
	}
	return tx.Commit()
}

// maxParams bounds the parameters of one statement, under SQLite's
// limit (32766) and PostgreSQL's (65535).
const maxParams = 30000

// insertRows runs head, the rows as (?, ...) tuples, and tail, in as few
// statements as maxParams allows. scan, if not nil, reads each row the
// statements return.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, head, tail string, rows [][]any, scan func(*sql.Rows) error) error {
	for len(rows) > 0 {
		chunk := rows[:min(len(rows), maxParams/len(rows[0]))]
		rows = rows[len(chunk):]
		var q strings.Builder
		q.WriteString(head)
		tuple := "(?" + strings.Repeat(", ?", len(chunk[0])-1) + ")"
		args := make([]any, 0, len(chunk)*len(chunk[0]))
		for i, r := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(tuple)
			args = append(args, r...)
		}
		q.WriteString(tail)
		if scan == nil {
			if _, err := tx.ExecContext(ctx, s.d.rebind(q.String()), args...); err != nil {
				return err
			}
			continue
		}
		res, err := tx.QueryContext(ctx, s.d.rebind(q.String()), args...)
		if err != nil {
			return err
		}
		for res.Next() {
			if err := scan(res); err != nil {
				res.Close()
				return err
			}
		}
		res.Close()
		if err := res.Err(); err != nil {
			return err
		}
	}
	return nil
}

// prune deletes the records past the retention.
func (s *Store) prune() {
	if s.opts.Retention <= 0 || s.unavailable() != nil {
		return
	}
	cutoff := s.opts.Now().Add(-s.opts.Retention).UnixNano()
	if err := s.deleteBefore(cutoff); err != nil {
		s.opts.Logger.Error("activity retention failed", "err", err)
	}
}

func (s *Store) deleteBefore(cutoff int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*writeTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.d.rebind(`DELETE FROM recipients WHERE txn IN (SELECT n FROM transactions WHERE time < ?)`), cutoff); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.d.rebind(`DELETE FROM transactions WHERE time < ?`), cutoff); err != nil {
		return err
	}
	return tx.Commit()
}

// text is s as PostgreSQL's text takes it: each byte that is not UTF-8,
// and each NUL, made U+FFFD. PostgreSQL refuses both, and a refused row
// would cost its whole batch; SQLite takes them, but both stores must
// keep and find the same.
func text(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == 0 || (r == utf8.RuneError && size == 1) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
		i += size
	}
	return b.String()
}

// clean is r with its strings made text, which its JSON would otherwise
// do its own way for bad UTF-8 (and not at all for NUL): the record kept
// is the one its columns say, and a client's bytes in a Subject, MAIL
// FROM or RCPT TO are as welcome in PostgreSQL as in SQLite.
func (r Record) clean() Record {
	for _, p := range []*string{&r.ID, &r.Node, &r.User, &r.SessionID, &r.ClientIP, &r.ClientName, &r.Helo, &r.From,
		&r.Outcome, &r.DecidedBy, &r.Reply, &r.SPF, &r.DKIM, &r.DMARC, &r.Relay, &r.MessageID, &r.Subject} {
		*p = text(*p)
	}
	r.Symbols = texts(r.Symbols)
	r.QueueIDs = texts(r.QueueIDs)
	if r.Recipients != nil {
		rcpts := make([]Recipient, len(r.Recipients))
		for i, rc := range r.Recipients {
			rc.Address, rc.Outcome, rc.DecidedBy, rc.Reply = text(rc.Address), text(rc.Outcome), text(rc.DecidedBy), text(rc.Reply)
			rc.Destinations = texts(rc.Destinations)
			rcpts[i] = rc
		}
		r.Recipients = rcpts
	}
	if r.Plugins != nil {
		plugins := make([]Verdict, len(r.Plugins))
		for i, v := range r.Plugins {
			v.Plugin, v.Stage, v.Action = text(v.Plugin), text(v.Stage), text(v.Action)
			plugins[i] = v
		}
		r.Plugins = plugins
	}
	return r
}

// texts is ss with each made text, a copy if any changed.
func texts(ss []string) []string {
	for i, s := range ss {
		if t := text(s); t != s {
			out := slices.Clone(ss)
			for j := i; j < len(out); j++ {
				out[j] = text(out[j])
			}
			return out
		}
	}
	return ss
}

// domain is the part of an address after its last @.
func domain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}
