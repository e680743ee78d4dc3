package audit

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration adds audit_chains, the one-row table that records how many
// hash chains the log has and the sequence at which they forked from the
// single chain (see the package documentation, "Sequencing across
// instances"). It stays empty until a writable Log opens with more than one
// chain; a log without its row is a single chain.

func registerChains(m *migrate.Migrations) error {
	return m.Register(chainsUp, chainsDown)
}

func chainsUp(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewCreateTable().Model((*chainsRow)(nil)).IfNotExists().Exec(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	return nil
}

func chainsDown(ctx context.Context, db *bun.DB) error {
	if _, err := db.NewDropTable().Model((*chainsRow)(nil)).IfExists().Exec(ctx); err != nil {
		return fmt.Errorf("drop table: %w", err)
	}
	return nil
}
