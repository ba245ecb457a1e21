package activity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/pgtest"
	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
)

// recordUntilWritten records fresh records until one is written: the
// first batch after PostgreSQL comes back may still meet a connection
// of the pool the restart broke.
func recordUntilWritten(t *testing.T, s *Store, prefix string) {
	t.Helper()
	before := s.Counts().Written
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; s.Counts().Written == before; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("nothing written within 30s: counts %+v, %v", s.Counts(), s.unavailable())
		}
		r := sample()[0]
		r.ID = fmt.Sprintf("%s-%d", prefix, i)
		s.Record(r)
		time.Sleep(20 * time.Millisecond)
	}
}

// PostgreSQL down when the gateway starts: Open does not fail, records
// are dropped and counted, the console is told the store is unavailable,
// and the store connects and migrates by itself when the server is up.
func TestPostgresDownAtOpen(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Stop()
	s, err := Open(pg.DSN(), Options{FlushEvery: 5 * time.Millisecond, RetryEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open with the server down: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	for _, r := range sample() {
		s.Record(r)
	}
	waitFor(t, func() bool { return s.Counts().DroppedError == 4 })
	_, _, err = s.Query(context.Background(), Filter{})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Query while down: %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(context.Background(), "a-1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get while down: %v, want ErrUnavailable", err)
	}
	if _, err := s.Stats(context.Background(), t0, t0.Add(time.Hour), time.Hour); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Stats while down: %v, want ErrUnavailable", err)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, s)
	recordUntilWritten(t, s, "after")
	if _, total, err := s.Query(context.Background(), Filter{}); err != nil || total == 0 {
		t.Errorf("Query after the server came up: %d, %v", total, err)
	}
}

// PostgreSQL stopped while the gateway runs: Record never waits, the
// batches are dropped and counted, and recording resumes by itself.
func TestPostgresOutage(t *testing.T) {
	pg := pgtest.Start(t)
	s := openTest(t, pg.DSN(), Options{BatchSize: 4, FlushEvery: 5 * time.Millisecond})
	recordUntilWritten(t, s, "before")
	pg.Stop()
	c0 := s.Counts()
	// Far more than a batch: a Record that waited for the database
	// would hang here.
	for i := range 1000 {
		r := sample()[i%4]
		r.ID = fmt.Sprintf("down-%d", i)
		s.Record(r)
	}
	waitFor(t, func() bool {
		c := s.Counts()
		return c.Written+c.DroppedError+c.DroppedFull-c0.Written-c0.DroppedError-c0.DroppedFull == 1000
	})
	if c := s.Counts(); c.Written != c0.Written || c.DroppedError == c0.DroppedError {
		t.Errorf("counts %+v after %+v: want none written, the batches dropped for the error", c, c0)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	recordUntilWritten(t, s, "after")
	r, err := s.Get(context.Background(), "before-0")
	if err != nil || r.ID != "before-0" {
		t.Errorf("a record from before the outage: %+v, %v", r, err)
	}
}

// Reads while a connected store's PostgreSQL is down are the store being
// unavailable (the console's 503, as before it connected), not a fault of
// ours (500); and they answer again once it is back.
func TestPostgresReadsWhileDown(t *testing.T) {
	pg := pgtest.Start(t)
	s := openTest(t, pg.DSN(), Options{BatchSize: 4, FlushEvery: 5 * time.Millisecond})
	recordUntilWritten(t, s, "before")
	pg.Stop()
	ctx := context.Background()
	now := time.Now()
	_, _, qerr := s.Query(ctx, Filter{})
	_, gerr := s.Get(ctx, "before-0")
	_, serr := s.Stats(ctx, now.Add(-time.Hour), now, time.Minute)
	for what, err := range map[string]error{"Query": qerr, "Get": gerr, "Stats": serr} {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with PostgreSQL down: %v, want ErrUnavailable", what, err)
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		r, err := s.Get(ctx, "before-0")
		return err == nil && r.ID == "before-0"
	})
}

// Several nodes starting at once against a new database: one migrates,
// the others wait for it and find nothing to do, and all come up at the
// first try (without the lock, some would fail and retry).
func TestPostgresConcurrentMigrations(t *testing.T) {
	pg := pgtest.Start(t)
	var log syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	var wg sync.WaitGroup
	stores := make([]*Store, 6)
	for i := range stores {
		wg.Go(func() {
			s, err := Open(pg.DSN(), Options{Logger: logger})
			if err != nil {
				t.Error(err)
				return
			}
			stores[i] = s
		})
	}
	wg.Wait()
	for i, s := range stores {
		if s == nil {
			t.FailNow()
		}
		t.Cleanup(func() { s.Close() })
		waitConnected(t, s)
		if err := s.unavailable(); err != nil {
			t.Errorf("store %d: %v", i, err)
		}
		r := sample()[0]
		r.ID = fmt.Sprintf("node-%d", i)
		r.Node = fmt.Sprintf("mx%d", i)
		s.Record(r)
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("a migration failed: %s", log.String())
	}
	s := stores[0]
	waitFor(t, func() bool {
		_, total, _ := s.Query(context.Background(), Filter{})
		return total == len(stores)
	})
	var v int
	if err := s.db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil || v != len(postgres.migrations) {
		t.Errorf("schema_version %d (%v), want %d", v, err, len(postgres.migrations))
	}
	var rows int
	s.db.QueryRow(`SELECT count(*) FROM schema_version`).Scan(&rows)
	if rows != 1 {
		t.Errorf("%d rows in schema_version", rows)
	}
	if recs, _, _ := s.Query(context.Background(), Filter{Node: "mx3"}); len(recs) != 1 || recs[0].ID != "node-3" {
		t.Errorf("node mx3's records: %v", ids(recs))
	}
}

// A schema a newer sluice migrated (an old node in a rolling upgrade)
// is not written to: the store says why, and mail goes on.
func TestPostgresSchemaTooNew(t *testing.T) {
	pg := pgtest.Start(t)
	s := openTest(t, pg.DSN(), Options{})
	if _, err := s.db.Exec(`UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var log syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	s, err := Open(pg.DSN(), Options{Logger: logger, FlushEvery: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitConnected(t, s)
	_, _, err = s.Query(context.Background(), Filter{})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "newer than this sluice") || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("Query: %v, want the schema's version said", err)
	}
	s.Record(sample()[0])
	waitFor(t, func() bool { return s.Counts().DroppedError == 1 })
	if !strings.Contains(log.String(), "newer than this sluice") {
		t.Errorf("log: %s", log.String())
	}
}

// The password in the URL is in no error and no log line.
func TestPostgresPasswordNotShown(t *testing.T) {
	pg := pgtest.Start(t)
	for _, dsn := range []string{
		"postgres://sluice:" + pgtest.Password + "@127.0.0.1:1/sluice?sslmode=bogus",
		"postgres://sluice:" + pgtest.Password + "@127.0.0.1:99999999/sluice",
		"postgresql://sluice:" + pgtest.Password + "@[::1/sluice",
	} {
		_, err := Open(dsn, Options{})
		if err == nil {
			t.Errorf("Open(%s) did not fail", dsn)
			continue
		}
		if strings.Contains(err.Error(), pgtest.Password) || !strings.HasPrefix(err.Error(), "activity database: ") {
			t.Errorf("Open's error shows the password, or not what failed: %v", err)
		}
	}
	// Refused: a wrong user's password, and a server that is down.
	for _, dsn := range []string{
		strings.Replace(pg.DSN(), "sluice:", "nobody:", 1),
		strings.Replace(pg.DSN(), fmt.Sprint(pg.Port), "1", 1),
	} {
		var log syncbuf.Buffer
		logger := slog.New(slog.NewTextHandler(&log, nil))
		s, err := Open(dsn, Options{Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return strings.Contains(log.String(), "retrying") })
		_, _, err = s.Query(context.Background(), Filter{})
		s.Close()
		if !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), pgtest.Password) || !strings.Contains(err.Error(), "xxxxx@127.0.0.1") {
			t.Errorf("Query: %v, want ErrUnavailable naming the server without the password", err)
		}
		if strings.Contains(log.String(), pgtest.Password) {
			t.Errorf("log shows the password, or nothing: %s", log.String())
		}
	}
}

// An SQLite database from before the node column gets it, and its old
// records read with no node.
func TestMigrateAddsNode(t *testing.T) {
	path := t.TempDir() + "/activity.db"
	db, err := openSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{sqlite.migrations[0], `CREATE TABLE schema_version (version INTEGER NOT NULL)`, `INSERT INTO schema_version VALUES (1)`,
		`INSERT INTO transactions (id, time, sender, sender_dom, outcome, decided_by, message_id, subject, data)
		 VALUES ('old-1', 0, '', '', 'none', '', '', '', '{"id":"old-1"}')`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := openTest(t, path, Options{})
	r := sample()[0]
	s.Record(r)
	waitWritten(t, s, 1)
	if recs, _, err := s.Query(context.Background(), Filter{Node: "mx1"}); err != nil || len(recs) != 1 {
		t.Errorf("node mx1 after migrating: %v, %v", ids(recs), err)
	}
	if r, err := s.Get(context.Background(), "old-1"); err != nil || r.Node != "" {
		t.Errorf("old record: %+v, %v", r, err)
	}
}

// A database of schema version 2 (before the submission user) gains the
// column, in SQLite as in PostgreSQL: its old records read with no user,
// and the new ones are found by theirs.
func TestMigrateAddsUser(t *testing.T) {
	eachBackend(t, func(t *testing.T, database string) {
		var db *sql.DB
		var err error
		d := &sqlite
		if isPostgres(database) {
			d = &postgres
			_, db, err = openPostgres(database)
		} else {
			db, err = openSQLite(database)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{d.migrations[0], d.migrations[1], `CREATE TABLE schema_version (version INTEGER NOT NULL)`, `INSERT INTO schema_version VALUES (2)`,
			`INSERT INTO transactions (id, node, time, sender, sender_dom, outcome, decided_by, message_id, subject, data)
			 VALUES ('old-1', 'mx1', 0, '', '', 'none', '', '', '', '{"id":"old-1","node":"mx1"}')`} {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
		s := openTest(t, database, Options{})
		r := sample()[2]
		s.Record(r)
		waitWritten(t, s, 1)
		if recs, _, err := s.Query(context.Background(), Filter{User: r.User}); err != nil || len(recs) != 1 || recs[0].User != r.User {
			t.Errorf("user %s after migrating: %v, %v", r.User, ids(recs), err)
		}
		if r, err := s.Get(context.Background(), "old-1"); err != nil || r.User != "" || r.Node != "mx1" {
			t.Errorf("old record: %+v, %v", r, err)
		}
		var v int
		if err := s.db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil || v != 3 {
			t.Errorf("schema_version %d, %v; want 3", v, err)
		}
	})
}

// A server that takes the connection and never answers holds neither the
// store's Close nor, through it, the gateway's shutdown.
func TestPostgresCloseWhileConnecting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	s, err := Open("postgres://sluice@"+l.Addr().String()+"/sluice?sslmode=disable", Options{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the store did not try to connect")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited for the silent server")
	}
}

// A role that does not own the database, with the grants docs/console.md
// gives: USAGE and CREATE on the schema to make the tables, and once they
// exist (and belong to another role) only SELECT, INSERT and DELETE on
// the three tables and UPDATE on schema_version.
func TestPostgresDocumentedGrants(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Exec(t, "postgres", `CREATE ROLE writer LOGIN PASSWORD 'writer-pw'`, `CREATE DATABASE shared`,
		`GRANT CONNECT ON DATABASE shared TO writer`)
	pg.Exec(t, "shared", `GRANT USAGE, CREATE ON SCHEMA public TO writer`)
	dsn := fmt.Sprintf("postgres://writer:writer-pw@127.0.0.1:%d/shared?sslmode=disable", pg.Port)
	s := openTest(t, dsn, Options{})
	s.Record(sample()[0])
	waitWritten(t, s, 1)
	s.Close()
	pg.Exec(t, "shared", `REVOKE CREATE ON SCHEMA public FROM writer`,
		`ALTER TABLE transactions OWNER TO postgres`, `ALTER TABLE recipients OWNER TO postgres`, `ALTER TABLE schema_version OWNER TO postgres`,
		`GRANT SELECT, INSERT, DELETE ON transactions, recipients, schema_version TO writer`,
		`GRANT UPDATE ON schema_version TO writer`)
	s = openTest(t, dsn, Options{Retention: 24 * time.Hour, Now: func() time.Time { return t0.Add(time.Hour) }})
	for _, r := range sample()[1:] {
		s.Record(r)
	}
	waitWritten(t, s, 3)
	if c := s.Counts(); c.Written != 3 {
		t.Errorf("counts %+v, want 3 written", c)
	}
	if _, total, err := s.Query(context.Background(), Filter{}); err != nil || total != 4 {
		t.Errorf("Query: %d, %v; want 4", total, err)
	}
	if err := s.deleteBefore(t0.UnixNano() + 1); err != nil {
		t.Errorf("retention: %v", err)
	}
}

// Upgrading to schema version 3 (the submission user's column) with the
// grants docs/console.md gives for tables that exist: ALTER TABLE is the
// owner's, so the store stays unavailable and says why, mail goes on, and
// once the owner has run the migration docs/console.md gives, the store
// connects by itself.
func TestPostgresUpgradeNeedsOwner(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Exec(t, "postgres", `CREATE ROLE writer LOGIN PASSWORD 'writer-pw'`, `CREATE DATABASE shared`,
		`GRANT CONNECT ON DATABASE shared TO writer`)
	pg.Exec(t, "shared", postgres.migrations[0], postgres.migrations[1],
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`, `INSERT INTO schema_version VALUES (2)`,
		`GRANT USAGE ON SCHEMA public TO writer`,
		`GRANT SELECT, INSERT, DELETE ON transactions, recipients, schema_version TO writer`,
		`GRANT UPDATE ON schema_version TO writer`)
	var log syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	dsn := fmt.Sprintf("postgres://writer:writer-pw@127.0.0.1:%d/shared?sslmode=disable", pg.Port)
	s, err := Open(dsn, Options{Logger: logger, RetryEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitFor(t, func() bool { return strings.Contains(log.String(), "retrying") })
	if _, _, err := s.Query(context.Background(), Filter{}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "must be owner of table transactions") {
		t.Errorf("Query before the owner migrated: %v, want ErrUnavailable saying the owner must migrate", err)
	}
	// As docs/console.md says, run as the tables' owner.
	pg.Exec(t, "shared", `ALTER TABLE transactions ADD COLUMN submitter TEXT NOT NULL DEFAULT ''`, `UPDATE schema_version SET version = 3`)
	waitConnected(t, s)
	if err := s.unavailable(); err != nil {
		t.Fatal(err)
	}
	r := sample()[2]
	s.Record(r)
	waitWritten(t, s, 1)
	if recs, _, err := s.Query(context.Background(), Filter{User: r.User}); err != nil || len(recs) != 1 {
		t.Errorf("user %s after the owner migrated: %v, %v", r.User, ids(recs), err)
	}
}
