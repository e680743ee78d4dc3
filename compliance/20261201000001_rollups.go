package compliance

import (
	"context"

	"github.com/clearance-broker/clearance/sqlschema"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This file is the compliance part's first schema migration (its table of
// saved rollups, rollup_store.go); bun/migrate takes its name and order from
// the file name. Later changes are new files, never edits here.

// MigrateRollups creates or updates the table saved rollups live in.
// New runs it; it is exported for tools that prepare a database.
func MigrateRollups(ctx context.Context, db *bun.DB) error {
	return sqlschema.Migrate(ctx, db, "compliance", registerRollupsV1)
}

func registerRollupsV1(m *migrate.Migrations) error {
	return m.Register(func(ctx context.Context, db *bun.DB) error {
		_, err := db.NewCreateTable().Model((*rollupRow)(nil)).IfNotExists().Exec(ctx)
		return err
	}, func(ctx context.Context, db *bun.DB) error {
		_, err := db.NewDropTable().Model((*rollupRow)(nil)).IfExists().Exec(ctx)
		return err
	})
}
