package audit

import (
	"context"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration widens the request id index so that the writer's look-up
// of final outcomes (dedupe) is answered from the index alone: the index on
// (request_id, seq) becomes one on (request_id, seq, event, decision). It
// still serves a query by request id in sequence order, and every append
// still maintains one index for request ids, not two. On a large
// PostgreSQL log the new index is built concurrently (swapIndex), so that
// appends go on during the build.

const (
	requestIdxV1 = "audit_entries_request_idx"
	requestIdxV2 = "audit_entries_request_outcome_idx"
)

func registerOutcomeIndex(m *migrate.Migrations) error {
	return m.Register(outcomeIndexUp, outcomeIndexDown)
}

func outcomeIndexUp(ctx context.Context, db *bun.DB) error {
	return swapIndex(ctx, db, requestIdxV1, requestIdxV2, "(request_id, seq, event, decision)")
}

func outcomeIndexDown(ctx context.Context, db *bun.DB) error {
	return swapIndex(ctx, db, requestIdxV2, requestIdxV1, "(request_id, seq)")
}
