package sqlschema

import (
	"context"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// The migrations of the tests live in a file named as bun/migrate expects
// (a timestamp first): it names each migration after its file.

func widgets(ms *migrate.Migrations) error {
	ms.MustRegister(func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE widgets (id INTEGER PRIMARY KEY)")
		return err
	}, nil)
	return nil
}

// broken registers a migration whose statement the database refuses.
func broken(ms *migrate.Migrations) error {
	ms.MustRegister(func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE")
		return err
	}, nil)
	return nil
}
