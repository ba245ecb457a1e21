package activity

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // the "pgx" driver for database/sql
	_ "modernc.org/sqlite"           // the "sqlite" driver: pure Go, so the binary stays static
)

// dialect is what SQLite and PostgreSQL say differently. The store's
// statements are written once, with ? for their parameters, and rebound.
type dialect struct {
	// migrations make the schema: schema_version says how many ran. A
	// new version appends one to both dialects; none is ever edited.
	migrations []string
	// hasVersion says whether the table schema_version exists: a role
	// without CREATE, once the tables are made, must not need it to run
	// CREATE TABLE IF NOT EXISTS.
	hasVersion string
	// lock is run first in the migration's transaction: "" for none.
	lock string
	// ilike is the operator of a case-insensitive LIKE (SQLite's LIKE
	// is, for ASCII).
	ilike string
	// rebind turns the ?s of a statement into the dialect's parameters.
	rebind func(string) string
}

var sqlite = dialect{
	migrations: []string{
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
		`ALTER TABLE transactions ADD COLUMN node TEXT NOT NULL DEFAULT ''`,
		// Record.User; "user" is a reserved word in PostgreSQL.
		`ALTER TABLE transactions ADD COLUMN submitter TEXT NOT NULL DEFAULT ''`,
	},
	hasVersion: `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'`,
	ilike:      "LIKE",
	rebind:     func(q string) string { return q },
}

var postgres = dialect{
	migrations: []string{
		`CREATE TABLE transactions (
		n          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		id         TEXT NOT NULL UNIQUE,
		time       BIGINT NOT NULL, -- Unix nanoseconds
		sender     TEXT NOT NULL,   -- lower case
		sender_dom TEXT NOT NULL,
		outcome    TEXT NOT NULL,
		decided_by TEXT NOT NULL,
		message_id TEXT NOT NULL,
		subject    TEXT NOT NULL,
		data       TEXT NOT NULL    -- the whole Record as JSON
	);
	CREATE INDEX transactions_time ON transactions(time);
	CREATE TABLE recipients (
		txn        BIGINT NOT NULL, -- transactions.n
		address    TEXT NOT NULL,   -- lower case
		domain     TEXT NOT NULL,
		outcome    TEXT NOT NULL,
		decided_by TEXT NOT NULL
	);
	CREATE INDEX recipients_txn ON recipients(txn);`,
		`ALTER TABLE transactions ADD COLUMN node TEXT NOT NULL DEFAULT ''`,
		// Record.User; "user" is a reserved word here.
		`ALTER TABLE transactions ADD COLUMN submitter TEXT NOT NULL DEFAULT ''`,
	},
	// A transaction-level advisory lock: released when the migration
	// commits or rolls back, or its connection dies. The key is ours:
	// "sluice" and 1 (0x736c7569636501).
	lock:       `SELECT pg_advisory_xact_lock(32488873856820481)`,
	hasVersion: `SELECT to_regclass('schema_version') IS NOT NULL`,
	ilike:      "ILIKE",
	rebind:     dollars,
}

// dollars numbers the ?s of q: $1, $2, ... The store's statements have
// no ? in a literal.
func dollars(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// CheckDatabase says whether Open would take database ([console]
// database), without opening it: a PostgreSQL URL that pgx cannot read
// (a bad sslmode, a port that is no number, ...) is an error, with the
// password masked. An SQLite file is not looked at: a gateway may be
// running on it.
func CheckDatabase(database string) error {
	if !isPostgres(database) {
		return nil
	}
	_, _, err := parsePostgres(database)
	return err
}

// openPostgres parses the URL and makes the pool; it does not connect.
// name is the URL without its password, for errors and logs: the
// password may be in the URL, or in PGPASSWORD, PGPASSFILE or ~/.pgpass,
// as libpq's.
func openPostgres(rawURL string) (name string, db *sql.DB, err error) {
	name, cfg, err := parsePostgres(rawURL)
	if err != nil {
		return name, nil, err
	}
	// pgx prepares each statement once per connection and keeps it,
	// 512 by default. A batch's INSERT has as many rows as the batch, so
	// under load (full batches) it repeats and gains from being kept
	// (39 µs a record against 50 re-planned each time), but its text
	// differs with the batch's size: a small cache keeps the statements
	// in use without holding hundreds of big ones on the server.
	cfg.StatementCacheCapacity = 32
	db = stdlib.OpenDB(*cfg)
	// One connection for the writer, the rest for the console's
	// readers: a bound on what one node takes of the server's.
	db.SetMaxOpenConns(8)
	return name, db, nil
}

// outOfReach says whether err is the database being out of reach rather
// than refusing what was asked: a connection that could not be made, was
// lost or broken, a server shutting down (SQLSTATE class 08, connection
// exception, and 57, operator intervention), or no answer in time.
func outOfReach(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57")
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
}

// parsePostgres reads the URL as pgx does, and names it without its
// password.
func parsePostgres(rawURL string) (name string, cfg *pgx.ConnConfig, err error) {
	u, uerr := url.Parse(rawURL)
	if uerr != nil {
		// url.Parse's error quotes the URL, password and all.
		return "", nil, errors.New("activity database: [console] database is not a URL (postgres://user@host:port/database)")
	}
	name = u.Redacted()
	cfg, err = pgx.ParseConfig(rawURL)
	if err != nil {
		// pgx's error quotes the URL with its password masked; mask it
		// here too, so that no version of pgx can show it.
		msg := err.Error()
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return name, nil, fmt.Errorf("activity database: %s", msg)
	}
	return name, cfg, nil
}
