package policy

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration adds the table of the rights messages run-time changes
// were recorded for (requestRow): its primary key, source and request id,
// is the unique index that keeps a message sent again from being recorded
// twice.

func registerRequests(m *migrate.Migrations) error {
	return m.Register(requestsUp, requestsDown)
}

func requestsUp(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewCreateTable().Model((*requestRow)(nil)).IfNotExists().Exec(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	return nil
}

func requestsDown(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewDropTable().Model((*requestRow)(nil)).IfExists().Exec(ctx); err != nil {
		return fmt.Errorf("drop table: %w", err)
	}
	return nil
}
