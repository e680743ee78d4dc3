package erasure

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration adds the table of pending entries (record.go): the audit
// entry of a notice's closing, written with the notice's new status and
// kept until the audit log holds it.

func registerPendingEntries(m *migrate.Migrations) error {
	return m.Register(pendingEntriesUp, pendingEntriesDown)
}

func pendingEntriesUp(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewCreateTable().Model((*pendingRow)(nil)).IfNotExists().Exec(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	return nil
}

func pendingEntriesDown(ctx context.Context, db *bun.DB) error {
	_, err := db.NewDropTable().Model((*pendingRow)(nil)).IfExists().Exec(ctx)
	return err
}
