package policy

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration adds the table of registry snapshots (snapshot.go).

func registerSnapshots(m *migrate.Migrations) error {
	return m.Register(snapshotsUp, snapshotsDown)
}

func snapshotsUp(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewCreateTable().Model((*snapshotRow)(nil)).IfNotExists().Exec(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	return nil
}

func snapshotsDown(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewDropTable().Model((*snapshotRow)(nil)).IfExists().Exec(ctx); err != nil {
		return fmt.Errorf("drop table: %w", err)
	}
	return nil
}
