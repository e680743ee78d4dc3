package audit

import (
	"context"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration folds the two indexes on request_id into one, on
// PostgreSQL. Every append inserted each entry into the request id index,
// (request_id, seq), and each final outcome also into the unique index of
// final outcomes, (request_id) WHERE final: two insertions at random places
// (request ids follow no order) for most entries. One unique index keyed on
// (request_id, 0) for a final outcome and (request_id, seq) for any other
// entry does both jobs:
//
//   - a second final outcome of a request has the key of the first, so the
//     insert fails on it as it failed on the unique index of final outcomes
//     (the writer then looks the batch's outcomes up, as before);
//   - any other entry's key is unique by its sequence number;
//   - a query by request id, and the writer's look-up of recorded final
//     outcomes, are a range scan on its first column (a request has a few
//     entries, sorted by sequence after the scan).
//
// Measured with broker-like appends through the writer (256 appenders,
// 175,000 entries a run, six alternating pairs), the server's CPU per entry
// over the test process's own: 1.97 → 1.80 (lower in all six; BENCHMARKS.md,
// finding 57).
//
// A log without a valid unique index of final outcomes (it holds a request
// with two, see 20261129000005) keeps its indexes: the writer goes on
// looking outcomes up in every batch. SQLite keeps its own indexes.
//
// During a rolling upgrade an instance of an earlier version finds no index
// of final outcomes by its old name and looks outcomes up in every batch,
// which is correct and slower, until it is upgraded too.

const requestFinalIdx = "audit_entries_request_final_idx"

// pgRequestFinalKey is the second column of requestFinalIdx: 0 for a final
// outcome, the sequence for any other entry.
const pgRequestFinalKey = "(CASE WHEN " + pgFinal + " THEN 0 ELSE seq END)"

func registerRequestFinalIndex(m *migrate.Migrations) error {
	return m.Register(requestFinalIndexUp, requestFinalIndexDown)
}

func requestFinalIndexUp(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	finals, err := lookUpIndex(ctx, db, finalIdx)
	if err != nil {
		return err
	}
	if !finals.valid || !finals.unique {
		return nil
	}
	return replaceIndexes(ctx, db,
		[]indexDef{{"CREATE UNIQUE INDEX", requestFinalIdx, "(request_id, " + pgRequestFinalKey + ")"}},
		finalIdx, requestIdxV1, requestIdxV2)
}

func requestFinalIndexDown(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	merged, err := lookUpIndex(ctx, db, requestFinalIdx)
	if err != nil || !merged.exists {
		return err
	}
	return replaceIndexes(ctx, db, []indexDef{
		{"CREATE INDEX", requestIdxV1, "(request_id, seq)"},
		{"CREATE UNIQUE INDEX", finalIdx, "(request_id) WHERE " + pgFinal},
	}, requestFinalIdx)
}
