package policy

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration adds the table of registry events whose erasures are not
// followed up yet (followup.go).

func registerErasureFollowUps(m *migrate.Migrations) error {
	return m.Register(erasureFollowUpsUp, erasureFollowUpsDown)
}

func erasureFollowUpsUp(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewCreateTable().Model((*followUpRow)(nil)).IfNotExists().Exec(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	return nil
}

func erasureFollowUpsDown(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewDropTable().Model((*followUpRow)(nil)).IfExists().Exec(ctx); err != nil {
		return fmt.Errorf("drop table: %w", err)
	}
	return nil
}
