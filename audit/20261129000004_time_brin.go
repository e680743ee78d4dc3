package audit

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration replaces the B-tree on (at, seq) by a BRIN index on at on
// PostgreSQL. The log is appended in time order, so the entries of a time
// range lie in a run of the table's pages: a BRIN index keeps the least and
// the greatest time of each range of pages (128, about 1,500 entries), and
// a time filter reads the pages whose ranges overlap it. Every query that
// filters on time (Query with From or To, the overview, the records of
// processing, the retention horizon) reads every entry of its range in any
// case: a B-tree could not spare those reads, only order them by time,
// which none of them wants (Query orders by sequence). A BRIN index costs an
// append next to nothing, where the B-tree was one of its seven index
// insertions.
//
// Entries of instances with clocks apart, or of two chains committing
// out of step, are not strictly in time order; the index stays exact (a
// page range holds whatever times it holds, and each entry read is checked
// against the filter), only a little less selective. Page ranges filled
// since the last summary are read by every time query until they are
// summarised: the checkpointer summarises them with every checkpoint
// (summarizeTime), at least once per CheckpointInterval while entries are
// appended. The index's autosummarize is off: it queues a request in
// autovacuum's work list (256 places, served at autovacuum's pace) each
// time a range is filled, about every 1,500 entries, and the server logs
// every request that finds the list full, with the whole insert statement,
// several times a second under load.
//
// SQLite keeps its B-tree: it has no BRIN.

const (
	timeBTree = "audit_entries_at_idx"
	timeBRIN  = "audit_entries_at_brin"
)

func registerTimeBRIN(m *migrate.Migrations) error {
	return m.Register(timeBRINUp, timeBRINDown)
}

func timeBRINUp(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	return swapIndex(ctx, db, timeBTree, timeBRIN, "USING brin (at)")
}

func timeBRINDown(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	return swapIndex(ctx, db, timeBRIN, timeBTree, "(at, seq)")
}

// summarizeTime summarises the page ranges of the time index filled since
// its last summary, on PostgreSQL, and returns how many it summarised. It
// takes a lock that appends do not wait for; concurrent calls (several
// instances) wait for each other.
func (l *Log) summarizeTime(ctx context.Context) (int64, error) {
	if !isPostgres(l.db) {
		return 0, nil
	}
	var n int64
	if err := l.db.NewRaw("SELECT brin_summarize_new_values(?::regclass)", timeBRIN).Scan(ctx, &n); err != nil {
		return 0, fmt.Errorf("audit: summarise the time index: %w", err)
	}
	return n, nil
}
