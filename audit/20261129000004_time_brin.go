package audit

import (
	"context"

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
// since the last summary are read by every time query until autovacuum
// summarises them (autosummarize).
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
	return swapIndex(ctx, db, timeBTree, timeBRIN, "USING brin (at) WITH (autosummarize = on)")
}

func timeBRINDown(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	return swapIndex(ctx, db, timeBRIN, timeBTree, "(at, seq)")
}
