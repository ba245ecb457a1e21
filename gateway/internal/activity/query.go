package activity

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Query returns the transactions f selects, newest first, one page of
// them (f.Limit from f.Offset), and how many f selects in all.
func (s *Store) Query(ctx context.Context, f Filter) ([]Record, int, error) {
	ctx, cancel, err := s.reading(ctx)
	defer cancel()
	if err != nil {
		return nil, 0, err
	}
	recs, total, err := s.query(ctx, f)
	return recs, total, s.readFailed(err)
}

func (s *Store) query(ctx context.Context, f Filter) ([]Record, int, error) {
	where, args := f.where(s.d)
	var total int
	if err := s.db.QueryRowContext(ctx, s.d.rebind(`SELECT count(*) FROM transactions t`+where), args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = 50
	case limit > 500:
		limit = 500
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(`SELECT data FROM transactions t`+where+
		` ORDER BY time DESC, n DESC LIMIT ? OFFSET ?`), append(args, limit, max(f.Offset, 0))...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var recs []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, 0, err
		}
		recs = append(recs, r)
	}
	return recs, total, rows.Err()
}

// where is f as an SQL condition on transactions t, with ? for its
// parameters. Addresses and domains compare in lower case, as the store
// keeps them; the text in any case.
func (f Filter) where(d *dialect) (string, []any) {
	// As the store keeps them: a filter with bytes PostgreSQL refuses
	// finds what they became rather than failing.
	for _, p := range []*string{&f.Address, &f.Sender, &f.Outcome, &f.DecidedBy, &f.Text, &f.Node, &f.User} {
		*p = text(*p)
	}
	var conds []string
	var args []any
	if a := strings.ToLower(strings.TrimSpace(f.Address)); a != "" {
		col, tcol := "domain", "t.sender_dom"
		if strings.Contains(a, "@") {
			col, tcol = "address", "t.sender"
		}
		conds = append(conds, fmt.Sprintf(`(%s = ? OR EXISTS (SELECT 1 FROM recipients r WHERE r.txn = t.n AND r.%s = ?))`, tcol, col))
		args = append(args, a, a)
	}
	if a := strings.ToLower(strings.TrimSpace(f.Sender)); a != "" {
		if strings.Contains(a, "@") {
			conds = append(conds, `t.sender = ?`)
		} else {
			conds = append(conds, `t.sender_dom = ?`)
		}
		args = append(args, a)
	}
	// An outcome or a decider matches the transaction's or any of its
	// recipients': a message forwarded to one and refused for another is
	// found among the refused too.
	if o := f.Outcome; o != "" {
		conds = append(conds, `(t.outcome = ? OR EXISTS (SELECT 1 FROM recipients r WHERE r.txn = t.n AND r.outcome = ?))`)
		args = append(args, o, o)
	}
	if d := f.DecidedBy; d != "" {
		op := "="
		if d == "plugin" {
			op, d = "LIKE", `plugin:%`
		}
		conds = append(conds, fmt.Sprintf(`(t.decided_by %[1]s ? OR EXISTS (SELECT 1 FROM recipients r WHERE r.txn = t.n AND r.decided_by %[1]s ?))`, op))
		args = append(args, d, d)
	}
	if !f.Since.IsZero() {
		conds = append(conds, `t.time >= ?`)
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		conds = append(conds, `t.time < ?`)
		args = append(args, f.Until.UnixNano())
	}
	if x := strings.TrimSpace(f.Text); x != "" {
		p := "%" + likeEscaper.Replace(x) + "%"
		conds = append(conds, fmt.Sprintf(`(t.subject %[1]s ? ESCAPE '\' OR t.message_id %[1]s ? ESCAPE '\')`, d.ilike))
		args = append(args, p, p)
	}
	if n := strings.TrimSpace(f.Node); n != "" {
		conds = append(conds, `t.node = ?`)
		args = append(args, n)
	}
	if u := strings.TrimSpace(f.User); u != "" {
		conds = append(conds, `t.submitter = ?`)
		args = append(args, u)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// Get returns the transaction named id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Record, error) {
	ctx, cancel, err := s.reading(ctx)
	defer cancel()
	if err != nil {
		return Record{}, err
	}
	r, err := scanRecord(s.db.QueryRowContext(ctx, s.d.rebind(`SELECT data FROM transactions WHERE id = ?`), text(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, ErrNotFound
	}
	return r, s.readFailed(err)
}

func scanRecord(row interface{ Scan(...any) error }) (Record, error) {
	var data string
	if err := row.Scan(&data); err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return Record{}, fmt.Errorf("activity record: %w", err)
	}
	return r, nil
}

// Bucket is the transactions of one step of time by outcome, for the
// chart.
type Bucket struct {
	Start  time.Time      `json:"start"`
	Counts map[string]int `json:"counts"` // outcome → transactions; outcomes with none left out
}

// Stats counts the transactions from since to until by outcome in steps
// of step (an hour for the chart): every step has its bucket, empty or
// not, the first starting at since.
func (s *Store) Stats(ctx context.Context, since, until time.Time, step time.Duration) ([]Bucket, error) {
	if step <= 0 || !until.After(since) {
		return nil, fmt.Errorf("activity stats: bad range %v to %v by %v", since, until, step)
	}
	n := int((until.Sub(since) + step - 1) / step)
	if n > 10000 {
		return nil, fmt.Errorf("activity stats: %d steps is too many", n)
	}
	buckets := make([]Bucket, n)
	for i := range buckets {
		buckets[i] = Bucket{Start: since.Add(time.Duration(i) * step), Counts: map[string]int{}}
	}
	ctx, cancel, err := s.reading(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	if err := s.readFailed(s.count(ctx, buckets, since, until, step)); err != nil {
		return nil, err
	}
	return buckets, nil
}

// count adds the transactions from since to until to buckets, each step
// long from since.
func (s *Store) count(ctx context.Context, buckets []Bucket, since, until time.Time, step time.Duration) error {
	from := since.UnixNano()
	rows, err := s.db.QueryContext(ctx, s.d.rebind(`SELECT (time - ?) / ?, outcome, count(*) FROM transactions
		WHERE time >= ? AND time < ? GROUP BY 1, 2`), from, int64(step), from, until.UnixNano())
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var i, count int
		var outcome string
		if err := rows.Scan(&i, &outcome, &count); err != nil {
			return err
		}
		if i >= 0 && i < len(buckets) {
			buckets[i].Counts[outcome] += count
		}
	}
	return rows.Err()
}
