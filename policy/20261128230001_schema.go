package policy

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This file is the first schema migration of the registry store; bun/migrate
// takes its name and order from the file name. Later changes are new files.

func registerSchemaV1(m *migrate.Migrations) error {
	return m.Register(schemaV1Up, schemaV1Down)
}

func schemaV1Up(ctx context.Context, db *bun.DB) error {
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, model := range []any{(*baseRow)(nil), (*agreementRow)(nil), (*eventRow)(nil), (*headRow)(nil)} {
			if _, err := tx.NewCreateTable().Model(model).IfNotExists().Exec(ctx); err != nil {
				return fmt.Errorf("create table: %w", err)
			}
		}
		if _, err := tx.NewInsert().Model(&headRow{ID: 1}).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
			return fmt.Errorf("seed head: %w", err)
		}
		return nil
	})
}

func schemaV1Down(ctx context.Context, db *bun.DB) error {
	for _, model := range []any{(*headRow)(nil), (*eventRow)(nil), (*agreementRow)(nil), (*baseRow)(nil)} {
		if _, err := db.NewDropTable().Model(model).IfExists().Exec(ctx); err != nil {
			return fmt.Errorf("drop table: %w", err)
		}
	}
	return nil
}
