package audit

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration widens the request id index so that the writer's look-up
// of final outcomes (dedupe) is answered from the index alone: the index on
// (request_id, seq) becomes one on (request_id, seq, event, decision). It
// still serves a query by request id in sequence order, and every append
// still maintains one index for request ids, not two.

const (
	requestIdxV1 = "audit_entries_request_idx"
	requestIdxV2 = "audit_entries_request_outcome_idx"
)

func registerOutcomeIndex(m *migrate.Migrations) error {
	return m.Register(outcomeIndexUp, outcomeIndexDown)
}

func outcomeIndexUp(ctx context.Context, db *bun.DB) error {
	return swapRequestIndex(ctx, db, requestIdxV1, requestIdxV2, "request_id, seq, event, decision")
}

func outcomeIndexDown(ctx context.Context, db *bun.DB) error {
	return swapRequestIndex(ctx, db, requestIdxV2, requestIdxV1, "request_id, seq")
}

// swapRequestIndex creates index create on cols and drops index drop, in one
// transaction.
func swapRequestIndex(ctx context.Context, db *bun.DB, drop, create, cols string) error {
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewCreateIndex().Model((*entryRow)(nil)).Index(create).
			ColumnExpr(cols).IfNotExists().Exec(ctx); err != nil {
			return fmt.Errorf("create index %s: %w", create, err)
		}
		if _, err := tx.NewDropIndex().Index(drop).IfExists().Exec(ctx); err != nil {
			return fmt.Errorf("drop index %s: %w", drop, err)
		}
		return nil
	})
}
