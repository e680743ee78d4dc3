package erasure

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration adds the table of sweeps (sweep.go): a second look at the
// audit log for deliveries of an erased subject's data that were under way
// when its notices were made.

func registerSweeps(m *migrate.Migrations) error {
	return m.Register(sweepsUp, sweepsDown)
}

func sweepsUp(ctx context.Context, db *bun.DB) error {
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewCreateTable().Model((*sweepRow)(nil)).IfNotExists().Exec(ctx); err != nil {
			return fmt.Errorf("create table: %w", err)
		}
		if _, err := tx.NewCreateIndex().Model((*sweepRow)(nil)).Index("erasure_sweeps_due_idx").
			Column("due_at").IfNotExists().Exec(ctx); err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		return nil
	})
}

func sweepsDown(ctx context.Context, db *bun.DB) error {
	_, err := db.NewDropTable().Model((*sweepRow)(nil)).IfExists().Exec(ctx)
	return err
}
