package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// DefaultLimit is the page size of Query when Filter.Limit is zero.
const DefaultLimit = 100

// Filter selects entries. Empty fields do not filter. Results are ordered by
// sequence; page with AfterSequence (the last sequence of the previous page).
type Filter struct {
	// SubjectID is a subject id in clear; it is hashed with the log's
	// SubjectKey on the way in and never sent to the store.
	SubjectID string
	// SubjectHMAC selects by an already hashed subject.
	SubjectHMAC string
	RequestID   string
	Recipient   string
	Country     string // recipient country, ISO 3166 alpha-2
	Purpose     string
	Decision    string
	Event       Event
	// From and To bound the entry time: From <= time < To.
	From, To time.Time
	// AfterSequence selects entries with a greater sequence number.
	AfterSequence int64
	// Limit caps the entries returned by Query (DefaultLimit if zero) and by
	// Export and Scan (no cap if zero).
	Limit int
}

// apply adds f's conditions to q. Each equality column has an index on
// (column, seq) (on PostgreSQL the subject's on a hash of it, and the
// decision's and event's on their rare values), so a filtered page is an
// index range scan.
func (l *Log) apply(q *bun.SelectQuery, f *Filter) (*bun.SelectQuery, error) {
	subject := f.SubjectHMAC
	if f.SubjectID != "" {
		if len(l.opts.SubjectKey) == 0 {
			return nil, ErrNoSubjectKey
		}
		subject = SubjectHMAC(l.opts.SubjectKey, f.SubjectID)
	}
	if subject != "" && isPostgres(l.db) {
		// The index on PostgreSQL keys a hash of the HMAC (migration
		// 20261130000001); the HMAC itself is compared below.
		q = q.Where(pgSubjectKey+" = hashtextextended(?, 0)", subject)
	}
	eq := []struct {
		col, val string
	}{
		{"subject_hmac", subject}, {"request_id", f.RequestID}, {"recipient", f.Recipient},
		{"recipient_country", f.Country}, {"purpose", f.Purpose}, {"decision", f.Decision},
		{"event", string(f.Event)},
	}
	for _, c := range eq {
		if c.val != "" {
			q = q.Where("? = ?", bun.Ident(c.col), c.val)
		}
	}
	if !f.From.IsZero() {
		q = q.Where("at >= ?", f.From.UTC())
	}
	if !f.To.IsZero() {
		q = q.Where("at < ?", f.To.UTC())
	}
	if f.AfterSequence > 0 {
		q = q.Where("seq > ?", f.AfterSequence)
	}
	return q.Order("seq"), nil
}

// Query returns one page of entries matching f, ordered by sequence.
func (l *Log) Query(ctx context.Context, f Filter) ([]Entry, error) {
	if f.Limit <= 0 {
		f.Limit = DefaultLimit
	}
	var out []Entry
	err := l.Scan(ctx, f, func(e *Entry) error {
		out = append(out, *e)
		return nil
	})
	return out, err
}

// Scan streams the entries matching f, ordered by sequence, to fn one row at
// a time; it holds no more than one entry in memory. An error from fn stops
// the scan and is returned.
func (l *Log) Scan(ctx context.Context, f Filter, fn func(*Entry) error) error {
	q, err := l.apply(l.db.NewSelect().Model((*entryRow)(nil)), &f)
	if err != nil {
		return err
	}
	if f.Limit > 0 {
		q = q.Limit(int64(f.Limit))
	}
	rows, err := q.Rows(ctx)
	if err != nil {
		return fmt.Errorf("audit: query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r entryRow
		if err := l.db.ScanRow(ctx, rows, &r); err != nil {
			return fmt.Errorf("audit: query: scan: %w", err)
		}
		e, err := r.entry()
		if err != nil {
			return err
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: query: %w", err)
	}
	return nil
}
