package policy

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration adds the table of registry events whose audit entries are
// not all written yet (pending.go).

func registerAuditPending(m *migrate.Migrations) error {
	return m.Register(auditPendingUp, auditPendingDown)
}

func auditPendingUp(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewCreateTable().Model((*pendingRow)(nil)).IfNotExists().Exec(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	return nil
}

func auditPendingDown(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewDropTable().Model((*pendingRow)(nil)).IfExists().Exec(ctx); err != nil {
		return fmt.Errorf("drop table: %w", err)
	}
	return nil
}
