package shred

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This file is the first schema migration of the subject keys; bun/migrate
// takes its name and order from the file name.

func registerSchemaV1(m *migrate.Migrations) error {
	return m.Register(schemaV1Up, schemaV1Down)
}

func schemaV1Up(ctx context.Context, db *bun.DB) error {
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewCreateTable().Model((*keyRow)(nil)).IfNotExists().Exec(ctx); err != nil {
			return fmt.Errorf("create table: %w", err)
		}
		if _, err := tx.NewCreateIndex().Model((*keyRow)(nil)).Index("shred_subject_keys_kid_idx").Unique().
			Column("key_id").IfNotExists().Exec(ctx); err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		return nil
	})
}

func schemaV1Down(ctx context.Context, db *bun.DB) error {
	_, err := db.NewDropTable().Model((*keyRow)(nil)).IfExists().Exec(ctx)
	return err
}
