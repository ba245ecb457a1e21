package gateway_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway"
	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/pgtest"
)

var sessionID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// consoleSections turns the console on, with settings, and a user whose
// hash is never checked here.
func consoleSections(settings string) string {
	return `
[console]
enabled = true
` + settings + `
[[console.user]]
name = "admin"
password_hash = "$2a$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234"
`
}

// Every transaction is recorded with what became of each recipient and
// who decided: forwarded by the destination, refused by a plugin or by
// relay protection, dropped by a plugin.
func TestActivityRecorded(t *testing.T) {
	e := startEnv(t, envOptions{sections: consoleSections("")})
	store := e.gw.Activity()
	if store == nil {
		t.Fatal("no activity store with [console] enabled")
	}
	c := e.client(t)
	if err := sendMail(t, c, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("forwarded: %v", err)
	}
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("gone@ours.test", nil); err == nil {
		t.Fatal("gone@ours.test accepted")
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("someone@elsewhere.test", nil); err == nil {
		t.Fatal("relayed for elsewhere.test")
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := sendMail(t, c, "alice@example.org", "drop@ours.test", testMessage); err != nil {
		t.Fatalf("dropped: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	var recs []activity.Record
	deadline := time.Now().Add(10 * time.Second)
	for len(recs) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		var err error
		if recs, _, err = store.Query(ctx, activity.Filter{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4: %+v", len(recs), recs)
	}
	// Newest first.
	dropped, relay, gone, fwd := recs[0], recs[1], recs[2], recs[3]

	check := func(name string, r activity.Record, outcome, by, reply, rcpt, rcptOutcome string) {
		t.Helper()
		if r.Outcome != outcome || r.DecidedBy != by || !strings.Contains(r.Reply, reply) {
			t.Errorf("%s: outcome %q by %q reply %q, want %q by %q with %q", name, r.Outcome, r.DecidedBy, r.Reply, outcome, by, reply)
		}
		if len(r.Recipients) != 1 || r.Recipients[0].Address != rcpt || r.Recipients[0].Outcome != rcptOutcome {
			t.Errorf("%s: recipients %+v, want %s %s", name, r.Recipients, rcpt, rcptOutcome)
		}
		if r.From != "alice@example.org" || r.ClientIP != "127.0.0.1" || r.Helo != "sender.example.org" || r.SessionID == "" ||
			!strings.HasPrefix(r.ID, r.SessionID+"-") {
			t.Errorf("%s: session fields %+v", name, r)
		}
		// Nodes sharing a store name sessions apart by 64 random bits;
		// the node is [cluster] node, by default the hostname.
		if !sessionID.MatchString(r.SessionID) || r.Node != "mx.ours.test" {
			t.Errorf("%s: session %q node %q, want 16 hex digits and mx.ours.test", name, r.SessionID, r.Node)
		}
	}
	check("forwarded", fwd, "forwarded", "destination", "250", "info@ours.test", "forwarded")
	check("refused by the router", gone, "refused", "plugin:router", "550 5.1.1 Gone", "gone@ours.test", "refused")
	check("refused by relay protection", relay, "refused", "host", "550", "someone@elsewhere.test", "refused")
	check("dropped", dropped, "dropped", "plugin:router", "250", "drop@ours.test", "dropped")

	if d := fwd.Recipients[0].Destinations; len(d) != 1 || d[0] != "me@dest.test" {
		t.Errorf("forwarded to %v, want me@dest.test", d)
	}
	if fwd.Subject != "a test" || fwd.MessageID != "<1@example.org>" || fwd.Relay == "" || fwd.Size == 0 || fwd.SPF == "" || fwd.DMARC == "" {
		t.Errorf("forwarded record: %+v", fwd)
	}
	if len(fwd.Plugins) == 0 || fwd.Plugins[0].Plugin != "router" || fwd.Plugins[0].Stage != "rcpt" {
		t.Errorf("forwarded record's plugins: %+v", fwd.Plugins)
	}
	if got, err := store.Get(ctx, gone.ID); err != nil || got.Recipients[0].Reply != gone.Recipients[0].Reply {
		t.Errorf("Get(%s) = %+v, %v", gone.ID, got, err)
	}
	ids := map[string]bool{}
	for _, r := range recs {
		ids[r.ID] = true
	}
	if len(ids) != 4 {
		t.Errorf("ids not distinct: %v", ids)
	}
}

// console.record_subject = false keeps subjects out of the database.
func TestActivityWithoutSubject(t *testing.T) {
	e := startEnv(t, envOptions{sections: consoleSections("record_subject = false")})
	c := e.client(t)
	if err := sendMail(t, c, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	var recs []activity.Record
	deadline := time.Now().Add(10 * time.Second)
	for len(recs) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		recs, _, _ = e.gw.Activity().Query(context.Background(), activity.Filter{})
	}
	if len(recs) != 1 || recs[0].Subject != "" || recs[0].MessageID != "<1@example.org>" {
		t.Errorf("records %+v, want one without subject", recs)
	}
}

// Each recipient has its own outcome and destinations: one forwarded in
// session and queued for the other domain, one the destination put off
// (tempfailed), and one the destination refused, in one transaction.
func TestActivityRecipients(t *testing.T) {
	e := startEnv(t, envOptions{dest2: true, sections: consoleSections("")})
	c := e.client(t)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("team@ours.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("later@ours.test", nil); err == nil {
		t.Fatal("later@ours.test accepted")
	}
	if err := c.Rcpt("bad@ours.test", nil); err == nil {
		t.Fatal("bad@ours.test accepted")
	}
	if _, err := sendData(t, c, testMessage); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	var recs []activity.Record
	deadline := time.Now().Add(10 * time.Second)
	for len(recs) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		recs, _, _ = e.gw.Activity().Query(context.Background(), activity.Filter{})
	}
	if len(recs) != 1 {
		t.Fatalf("records %+v, want one", recs)
	}
	r := recs[0]
	if r.Outcome != "forwarded" || r.DecidedBy != "destination" || len(r.QueueIDs) != 1 {
		t.Errorf("transaction %q by %q, queue ids %v: want forwarded by destination with one queued copy", r.Outcome, r.DecidedBy, r.QueueIDs)
	}
	want := []activity.Recipient{
		{Address: "team@ours.test", Destinations: []string{"me@dest.test", "you@dest2.test"}, Outcome: "forwarded", DecidedBy: "destination"},
		{Address: "later@ours.test", Outcome: "tempfailed", DecidedBy: "destination", Reply: "451 4.2.1"},
		{Address: "bad@ours.test", Outcome: "refused", DecidedBy: "destination", Reply: "550 5.1.1"},
	}
	if len(r.Recipients) != len(want) {
		t.Fatalf("recipients %+v", r.Recipients)
	}
	for i, w := range want {
		g := r.Recipients[i]
		if g.Address != w.Address || g.Outcome != w.Outcome || g.DecidedBy != w.DecidedBy || !strings.HasPrefix(g.Reply, w.Reply) ||
			strings.Join(g.Destinations, ",") != strings.Join(w.Destinations, ",") {
			t.Errorf("recipient %d: %+v, want %+v", i, g, w)
		}
	}
	// The filters find it by any of its recipients' outcomes.
	for _, o := range []string{"forwarded", "tempfailed", "refused"} {
		if _, n, _ := e.gw.Activity().Query(context.Background(), activity.Filter{Outcome: o, Address: "ours.test"}); n != 1 {
			t.Errorf("outcome %s: %d records, want 1", o, n)
		}
	}
}

// sluice check (gateway.Check) never opens or creates the console's
// database: a gateway may be running on it.
func TestCheckLeavesActivityAlone(t *testing.T) {
	e := prepareEnv(t, envOptions{sections: consoleSections("")})
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.Check(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.ConsoleDatabase()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after check, %s: %v, want it not to exist", cfg.ConsoleDatabase(), err)
	}
}

// A gateway whose activity store is PostgreSQL starts and serves mail
// while PostgreSQL is down, counting the records it drops, and records
// by itself (with its node's name) once PostgreSQL is up.
func TestActivityPostgresDownAtStart(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Stop()
	e := startEnv(t, envOptions{sections: consoleSections(`database = "`+pg.DSN()+`"`) + `
[cluster]
node = "mx-a"
`})
	c := e.client(t)
	if err := sendMail(t, c, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("with PostgreSQL down: %v", err)
	}
	waitFor(t, "the record dropped", func() bool { return scrape(t, e)[`sluice_activity_records_dropped_total{reason="error"}`] == 1 })
	if _, _, err := e.gw.Activity().Query(context.Background(), activity.Filter{}); !errors.Is(err, activity.ErrUnavailable) {
		t.Errorf("Query with PostgreSQL down: %v", err)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	var recs []activity.Record
	waitFor(t, "a record in PostgreSQL", func() bool {
		if err := sendMail(t, c, "alice@example.org", "info@ours.test", testMessage); err != nil {
			t.Fatal(err)
		}
		recs, _, _ = e.gw.Activity().Query(context.Background(), activity.Filter{Node: "mx-a"})
		return len(recs) > 0
	})
	if recs[0].Node != "mx-a" || recs[0].Outcome != "forwarded" {
		t.Errorf("record %+v", recs[0])
	}
	c.Quit()
}

// sluice check reports a [console] database URL the gateway would refuse
// at start, at its line and without its password, and connects to
// nothing.
func TestCheckActivityURL(t *testing.T) {
	for _, tc := range []struct{ database, want string }{
		{"postgres://sluice:check-secret@127.0.0.1:1/sluice?sslmode=bogus", "sslmode is invalid"},
		{"postgresql://sluice:check-secret@127.0.0.1:1/sluice?connect_timeout=soon", "connect_timeout"},
	} {
		e := prepareEnv(t, envOptions{sections: consoleSections(`database = "` + tc.database + `"`)})
		cfg, err := config.Load(e.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		err = gateway.Check(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), e.cfgPath+":") || !strings.Contains(err.Error(), "console.database") ||
			!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "check-secret") {
			t.Errorf("check with %s: %v; want console.database's error at its line, without the password", tc.database, err)
		}
	}
	// A good URL is no error, PostgreSQL absent.
	e := prepareEnv(t, envOptions{sections: consoleSections(`database = "postgres://sluice:check-secret@127.0.0.1:1/sluice"`)})
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.Check(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("check with a good URL: %v", err)
	}
}
