package activity

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/fakeclock"
	"github.com/sluice-mail/sluice/gateway/internal/pgtest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// backends are the stores the tests of the store's behaviour run
// against, each giving a fresh database to Open: Query, Get, Stats, the
// retention and the batching must answer the same on both.
var backends = []struct {
	name     string
	database func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "activity.db") }},
	{"postgres", func(t *testing.T) string { return pgtest.Start(t).DSN() }},
}

// eachBackend runs test on each backend, as a subtest.
func eachBackend(t *testing.T, test func(t *testing.T, database string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.database(t)) })
	}
}

// openTest opens the store and waits until it can be used (PostgreSQL
// connects in the background).
func openTest(t *testing.T, database string, opts Options) *Store {
	t.Helper()
	s, err := Open(database, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitConnected(t, s)
	if err := s.unavailable(); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitConnected waits until the store has connected or given up.
func waitConnected(t *testing.T, s *Store) {
	t.Helper()
	select {
	case <-s.connected:
	case <-time.After(30 * time.Second):
		t.Fatalf("not connected after 30s: %v", s.unavailable())
	}
}

// waitWritten waits until the writer has dealt with n records, written
// or dropped.
func waitWritten(t *testing.T, s *Store, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := s.Counts()
		if c.Written+c.DroppedError >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts %+v, waiting for %d", c, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sample is a set of transactions, the newest last.
func sample() []Record {
	return []Record{
		{ID: "a-1", Node: "mx1", Time: t0, From: "Alice@Example.org", Outcome: "forwarded", DecidedBy: "destination", Reply: "250 2.0.0 OK",
			Recipients: []Recipient{{Address: "info@my.test", Destinations: []string{"me@dest.test"}, Outcome: "forwarded", DecidedBy: "destination"}},
			MessageID:  "<m1@example.org>", Subject: "Invoice 42", SPF: "pass", Plugins: []Verdict{{Plugin: "spam", Stage: "data", Action: "continue", Duration: time.Millisecond}}},
		{ID: "b-1", Node: "mx2", Time: t0.Add(time.Minute), From: "bob@other.test", Outcome: "refused", DecidedBy: "plugin:dmarc", Reply: "550 5.7.1 DMARC",
			Recipients: []Recipient{{Address: "sales@my.test", Outcome: "forwarded", DecidedBy: "destination"}},
			MessageID:  "<m2@other.test>", Subject: "100% off_sale"},
		{ID: "b-2", Node: "mx1", User: "bob", Time: t0.Add(2 * time.Minute), From: "bob@other.test", Outcome: "forwarded", DecidedBy: "destination",
			Recipients: []Recipient{
				{Address: "info@my.test", Outcome: "forwarded", DecidedBy: "destination"},
				{Address: "nobody@my.test", Outcome: "refused", DecidedBy: "host", Reply: "550 5.1.1 no such recipient"}},
			MessageID: "<m3@other.test>"},
		{ID: "c-1", Node: "mx2", Time: t0.Add(time.Hour + 3*time.Minute), From: "", Outcome: "dropped", DecidedBy: "plugin:router",
			Recipients: []Recipient{{Address: "junk@other.test", Outcome: "dropped", DecidedBy: "plugin:router"}}},
	}
}

func filled(t *testing.T, database string) *Store {
	t.Helper()
	s := openTest(t, database, Options{})
	for _, r := range sample() {
		s.Record(r)
	}
	waitWritten(t, s, uint64(len(sample())))
	return s
}

func ids(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func TestQueryFilters(t *testing.T) {
	eachBackend(t, func(t *testing.T, database string) {
		s := filled(t, database)
		for _, tc := range []struct {
			name string
			f    Filter
			want []string
		}{
			{"all, newest first", Filter{}, []string{"c-1", "b-2", "b-1", "a-1"}},
			{"address as recipient", Filter{Address: "info@my.test"}, []string{"b-2", "a-1"}},
			{"address in other case", Filter{Address: "INFO@My.Test"}, []string{"b-2", "a-1"}},
			{"address as sender", Filter{Address: "alice@example.org"}, []string{"a-1"}},
			{"refused recipient's address", Filter{Address: "nobody@my.test"}, []string{"b-2"}},
			{"domain of recipients", Filter{Address: "my.test"}, []string{"b-2", "b-1", "a-1"}},
			{"domain of sender or recipient", Filter{Address: "other.test"}, []string{"c-1", "b-2", "b-1"}},
			{"sender", Filter{Sender: "bob@other.test"}, []string{"b-2", "b-1"}},
			{"sender domain", Filter{Sender: "example.org"}, []string{"a-1"}},
			{"sender is not a recipient", Filter{Sender: "info@my.test"}, nil},
			{"outcome of transaction or recipient", Filter{Outcome: "refused"}, []string{"b-2", "b-1"}},
			{"outcome dropped", Filter{Outcome: "dropped"}, []string{"c-1"}},
			{"decided by host", Filter{DecidedBy: "host"}, []string{"b-2"}},
			{"decided by any plugin", Filter{DecidedBy: "plugin"}, []string{"c-1", "b-1"}},
			{"decided by one plugin", Filter{DecidedBy: "plugin:dmarc"}, []string{"b-1"}},
			{"since, inclusive", Filter{Since: t0.Add(time.Minute)}, []string{"c-1", "b-2", "b-1"}},
			{"until, exclusive", Filter{Until: t0.Add(2 * time.Minute)}, []string{"b-1", "a-1"}},
			{"range", Filter{Since: t0.Add(time.Minute), Until: t0.Add(time.Hour)}, []string{"b-2", "b-1"}},
			{"text in subject", Filter{Text: "invoice"}, []string{"a-1"}},
			{"text in message-id", Filter{Text: "m3@other"}, []string{"b-2"}},
			{"text with LIKE's characters", Filter{Text: "100%"}, []string{"b-1"}},
			{"underscore is literal", Filter{Text: "f_s"}, []string{"b-1"}},
			{"node", Filter{Node: "mx2"}, []string{"c-1", "b-1"}},
			{"node and more", Filter{Node: "mx1", Address: "nobody@my.test"}, []string{"b-2"}},
			{"submission user", Filter{User: "bob"}, []string{"b-2"}},
			{"submission user and more", Filter{User: "bob", Node: "mx2"}, nil},
			{"no such user", Filter{User: "alice"}, nil},
			{"combined", Filter{Address: "my.test", Outcome: "forwarded", Sender: "other.test"}, []string{"b-2", "b-1"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				recs, total, err := s.Query(context.Background(), tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if got := ids(recs); !slices.Equal(got, tc.want) {
					t.Errorf("got %v, want %v", got, tc.want)
				}
				if total != len(tc.want) {
					t.Errorf("total %d, want %d", total, len(tc.want))
				}
			})
		}
	})
}

func TestQueryPaging(t *testing.T) {
	eachBackend(t, func(t *testing.T, database string) {
		s := filled(t, database)
		recs, total, err := s.Query(context.Background(), Filter{Limit: 2, Offset: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(recs); !slices.Equal(got, []string{"b-2", "b-1"}) || total != 4 {
			t.Errorf("page = %v of %d, want [b-2 b-1] of 4", got, total)
		}
		recs, total, _ = s.Query(context.Background(), Filter{Limit: 2, Offset: 4})
		if len(recs) != 0 || total != 4 {
			t.Errorf("past the end: %v of %d", ids(recs), total)
		}
	})
}

func TestGet(t *testing.T) {
	eachBackend(t, func(t *testing.T, database string) {
		s := filled(t, database)
		r, err := s.Get(context.Background(), "a-1")
		if err != nil {
			t.Fatal(err)
		}
		want := sample()[0]
		if r.From != want.From || r.Node != "mx1" || !r.Time.Equal(want.Time) || r.Subject != want.Subject || r.SPF != "pass" ||
			len(r.Recipients) != 1 || r.Recipients[0].Destinations[0] != "me@dest.test" ||
			len(r.Plugins) != 1 || r.Plugins[0].Duration != time.Millisecond {
			t.Errorf("Get = %+v, want %+v", r, want)
		}
		if r.User != "" {
			t.Errorf("Get(a-1).User = %q: it came from the MX", r.User)
		}
		if r, err := s.Get(context.Background(), "b-2"); err != nil || r.User != "bob" {
			t.Errorf("Get(b-2): user %q, %v; want bob", r.User, err)
		}
		if _, err := s.Get(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of an unknown id: %v, want ErrNotFound", err)
		}
	})
}

func TestStats(t *testing.T) {
	eachBackend(t, func(t *testing.T, database string) {
		s := filled(t, database)
		b, err := s.Stats(context.Background(), t0, t0.Add(3*time.Hour), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 3 {
			t.Fatalf("%d buckets, want 3", len(b))
		}
		want := []map[string]int{{"forwarded": 2, "refused": 1}, {"dropped": 1}, {}}
		for i := range b {
			if !b[i].Start.Equal(t0.Add(time.Duration(i) * time.Hour)) {
				t.Errorf("bucket %d starts at %v", i, b[i].Start)
			}
			if len(b[i].Counts) != len(want[i]) {
				t.Errorf("bucket %d: %v, want %v", i, b[i].Counts, want[i])
			}
			for k, v := range want[i] {
				if b[i].Counts[k] != v {
					t.Errorf("bucket %d: %v, want %v", i, b[i].Counts, want[i])
				}
			}
		}
	})
}

// The retention job deletes what is older than the retention, at Open
// and then every PruneEvery, by the clock it is given.
func TestRetention(t *testing.T) {
	eachBackend(t, func(t *testing.T, path string) {
		clock := fakeclock.New(t0.Add(90 * time.Minute))
		s := openTest(t, path, Options{Retention: time.Hour, Now: clock.Now, PruneEvery: 10 * time.Millisecond})
		for _, r := range sample() {
			s.Record(r)
		}
		waitWritten(t, s, 4)
		// Written now, the old ones go at the next run.
		waitFor(t, func() bool {
			recs, _, _ := s.Query(context.Background(), Filter{})
			return slices.Equal(ids(recs), []string{"c-1"})
		})
		clock.Advance(time.Hour)
		waitFor(t, func() bool {
			_, total, _ := s.Query(context.Background(), Filter{})
			return total == 0
		})
		var n int
		s.db.QueryRow(`SELECT count(*) FROM recipients`).Scan(&n)
		if n != 0 {
			t.Errorf("%d recipients left behind", n)
		}

		// At Open.
		s.Close()
		clock.Set(t0.Add(90 * time.Minute))
		s = openTest(t, path, Options{Now: clock.Now})
		for _, r := range sample() {
			s.Record(r)
		}
		s.Close()
		s = openTest(t, path, Options{Retention: time.Hour, Now: clock.Now})
		recs, _, err := s.Query(context.Background(), Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(recs); !slices.Equal(got, []string{"c-1"}) {
			t.Errorf("after Open: %v, want [c-1]", got)
		}
	})
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close writes what is pending, whatever the batch's timer says.
func TestCloseFlushes(t *testing.T) {
	eachBackend(t, func(t *testing.T, path string) {
		s := openTest(t, path, Options{FlushEvery: time.Hour, BatchSize: 1000})
		for _, r := range sample() {
			s.Record(r)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if c := s.Counts(); c.Written != 4 {
			t.Errorf("counts %+v after Close, want 4 written", c)
		}
		s.Record(sample()[0]) // after Close: dropped, not a panic
		if c := s.Counts(); c.DroppedFull != 1 {
			t.Errorf("a record after Close: counts %+v", c)
		}
		s = openTest(t, path, Options{})
		if _, total, _ := s.Query(context.Background(), Filter{}); total != 4 {
			t.Errorf("%d records after reopening, want 4", total)
		}
	})
}

// A locked database (another process writing) or a full one never makes
// Record wait: the batch is dropped and counted, and recording resumes
// once the database takes writes again.
func TestLockedDatabaseDropsAndCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "activity.db")
	s := openTest(t, path, Options{Pending: 8, BatchSize: 4, FlushEvery: 5 * time.Millisecond})
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(100)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), `BEGIN EXCLUSIVE`); err != nil {
		t.Fatal(err)
	}
	// Far more than Pending: a Record that blocked would hang here.
	for i := range 1000 {
		r := sample()[i%4]
		r.ID += "-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s.Record(r)
	}
	waitFor(t, func() bool { return s.Counts().DroppedError > 0 })
	c := s.Counts()
	if c.DroppedFull == 0 || c.Written != 0 {
		t.Errorf("counts %+v: want records dropped for a full queue and none written", c)
	}
	if _, err := conn.ExecContext(context.Background(), `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitFor(t, func() bool { return s.Counts().Written+s.Counts().DroppedError+s.Counts().DroppedFull == 1000 })
	s.Record(sample()[0])
	waitFor(t, func() bool { return s.Counts().Written > 0 })
}

func TestFullDatabaseDropsAndCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "activity.db")
	s := openTest(t, path, Options{BatchSize: 16, FlushEvery: 5 * time.Millisecond})
	// A database that may not grow is a full disk as SQLite sees it.
	s.db.SetMaxOpenConns(1) // the pragma is the connection's own
	if _, err := s.db.Exec(`PRAGMA max_page_count = 1`); err != nil {
		t.Fatal(err)
	}
	big := sample()[0]
	big.Subject = string(make([]byte, 64<<10))
	for i := range 100 {
		big.ID = "big-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s.Record(big)
	}
	waitFor(t, func() bool { return s.Counts().DroppedError+s.Counts().DroppedFull == 100 })
	if c := s.Counts(); c.Written != 0 || c.DroppedError == 0 {
		t.Errorf("counts %+v: want every record dropped, some by the database", c)
	}
}

// The console reads while the writer writes: WAL.
func TestWAL(t *testing.T) {
	s := filled(t, filepath.Join(t.TempDir(), "activity.db"))
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q (%v), want wal", mode, err)
	}
}

// BenchmarkRecord is the writer's cost per record: what recording takes
// from the machine, off the session's path, on each backend.
func BenchmarkRecord(b *testing.B) {
	for _, db := range []struct {
		name     string
		database func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return filepath.Join(b.TempDir(), "activity.db") }},
		{"postgres", func(b *testing.B) string { return pgtest.Start(b).DSN() }},
	} {
		b.Run(db.name, func(b *testing.B) { benchmarkRecord(b, db.database(b)) })
	}
}

func benchmarkRecord(b *testing.B, database string) {
	s, err := Open(database, Options{})
	if err != nil {
		b.Fatal(err)
	}
	<-s.connected
	if err := s.unavailable(); err != nil {
		b.Fatal(err)
	}
	r := sample()[2]
	r.Plugins = sample()[0].Plugins
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		r.ID = "bench-" + strconv.Itoa(n)
		s.Record(r)
		if n%4096 == 0 {
			for len(s.in) > 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	s.Close()
	if c := s.Counts(); c.Written != uint64(n) {
		b.Errorf("counts %+v, want %d written", c, n)
	}
}

// A batch is written in as few statements as the databases' limits on
// parameters allow, every row of it; an id recorded before, or twice in
// the batch, keeps its first record and its recipients once.
func TestBigBatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, database string) {
		s := openTest(t, database, Options{BatchSize: 1000, FlushEvery: time.Hour})
		s.Record(Record{ID: "dup-0", Time: t0, Outcome: "forwarded", Recipients: []Recipient{{Address: "first@my.test"}}})
		for i := range 300 {
			r := Record{ID: "big-" + strconv.Itoa(i), Time: t0.Add(time.Duration(i) * time.Second), Outcome: "forwarded"}
			for j := range 30 { // 300 × 30 recipients × 5 columns: more than one statement
				r.Recipients = append(r.Recipients, Recipient{Address: "r" + strconv.Itoa(j) + "@my.test", Outcome: "forwarded"})
			}
			s.Record(r)
		}
		s.Record(Record{ID: "dup-0", Time: t0, Outcome: "refused", Recipients: []Recipient{{Address: "second@my.test"}}})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if c := s.Counts(); c.Written != 302 {
			t.Errorf("counts %+v, want 302 written", c)
		}
		s = openTest(t, database, Options{})
		s.Record(Record{ID: "dup-0", Time: t0, Outcome: "tempfailed", Recipients: []Recipient{{Address: "third@my.test"}}})
		waitWritten(t, s, 1)
		var txns, rcpts int
		s.db.QueryRow(`SELECT count(*) FROM transactions`).Scan(&txns)
		s.db.QueryRow(`SELECT count(*) FROM recipients`).Scan(&rcpts)
		if txns != 301 || rcpts != 300*30+1 {
			t.Errorf("%d transactions and %d recipients, want 301 and %d", txns, rcpts, 300*30+1)
		}
		if r, err := s.Get(context.Background(), "dup-0"); err != nil || r.Outcome != "forwarded" {
			t.Errorf("dup-0: %+v, %v; want the first record", r, err)
		}
		if recs, _, _ := s.Query(context.Background(), Filter{Address: "r29@my.test"}); len(recs) != 50 {
			t.Errorf("%d transactions to r29@my.test on the first page, want 50", len(recs))
		}
	})
}

// Bytes PostgreSQL refuses in text (invalid UTF-8, NUL), from a client's
// Subject, MAIL FROM or RCPT TO, cost neither their record nor the
// others of its batch, and both stores find the same: the record as it
// was kept, with what is not UTF-8 replaced by U+FFFD.
func TestBadBytes(t *testing.T) {
	eachBackend(t, func(t *testing.T, database string) {
		s := openTest(t, database, Options{BatchSize: 10, FlushEvery: time.Hour})
		good := sample()[0]
		bad := Record{ID: "bad\xff-1", Node: "mx\x001", User: "b\xe9b\x00", Time: t0.Add(time.Second), From: "b\xe9b@Latin1.test", Outcome: "forwarded\x00",
			DecidedBy: "destination", MessageID: "<\xff@x>", Subject: "Caf\xe9 \x00 100%",
			Recipients: []Recipient{{Address: "\xe9t\xe9@My.test", Outcome: "refused\xff", DecidedBy: "host\x00"}}}
		s.Record(good)
		s.Record(bad)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if c := s.Counts(); c.Written != 2 {
			t.Fatalf("counts %+v, want both written", c)
		}
		s = openTest(t, database, Options{})
		ctx := context.Background()
		recs, total, err := s.Query(ctx, Filter{Text: "caf\uFFFD"})
		if err != nil || total != 1 || len(recs) != 1 {
			t.Fatalf("text caf\\uFFFD: %d %v %v", total, ids(recs), err)
		}
		id := recs[0].ID
		if _, err := s.Get(ctx, id); err != nil {
			t.Errorf("Get(%q): %v", id, err)
		}
		for _, f := range []Filter{
			{Sender: "b\uFFFDb@latin1.test"}, {Sender: "latin1.test"},
			{Address: "\uFFFDt\uFFFD@my.test"}, {Address: "my.test"},
			{Node: "mx\uFFFD1"}, {User: "b\uFFFDb\uFFFD"}, {Outcome: "refused\uFFFD"}, {DecidedBy: "host\uFFFD"},
		} {
			recs, _, err := s.Query(ctx, f)
			if err != nil || !slices.Contains(ids(recs), id) {
				t.Errorf("%+v: %v, %v; want %q among them", f, ids(recs), err, id)
			}
		}
		// A filter with such bytes is no error either.
		if _, _, err := s.Query(ctx, Filter{Address: "\xff\x00@my.test", Text: "\xff\x00", Node: "\x00", User: "\xff"}); err != nil {
			t.Errorf("Query with bad bytes: %v", err)
		}
		if _, err := s.Get(ctx, "bad\xff\x00"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get with bad bytes: %v, want ErrNotFound", err)
		}
	})
}
