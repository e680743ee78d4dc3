package policy

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration adds the table of the parts of registry snapshots
// (snapshot.go): a snapshot's content is no longer one row.

func registerSnapshotParts(m *migrate.Migrations) error {
	return m.Register(snapshotPartsUp, snapshotPartsDown)
}

func snapshotPartsUp(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewCreateTable().Model((*snapshotPartRow)(nil)).IfNotExists().Exec(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	return nil
}

func snapshotPartsDown(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewDropTable().Model((*snapshotPartRow)(nil)).IfExists().Exec(ctx); err != nil {
		return fmt.Errorf("drop table: %w", err)
	}
	return nil
}
