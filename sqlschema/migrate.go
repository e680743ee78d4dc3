// Package sqlschema runs the bun/migrate migrations of one part of Clearance
// (the audit log, the registry store, erasure notices, subject keys) on the
// shared SQL store, Postgres or SQLite, safely when several broker
// instances start at once.
//
// Each part keeps its own migrations table (<name>_migrations) and lock
// table (<name>_migration_locks), so parts evolve independently. Creating
// the tables and taking the lock are retried for up to 30 seconds, since a
// concurrent instance may be doing the same; an instance that died while
// migrating leaves its lock row behind, to be removed by hand.
package sqlschema

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// Register adds migrations to a set; each part of Clearance has one per
// schema change.
type Register func(*migrate.Migrations) error

// Migrate brings the tables of the part called name up to date with the
// migrations that register adds. Errors are prefixed with name, e.g.
// "audit: lock migrations: …".
func Migrate(ctx context.Context, db *bun.DB, name string, register ...Register) error {
	ms := migrate.NewMigrations()
	for _, r := range register {
		if err := r(ms); err != nil {
			return fmt.Errorf("%s: migrations: %w", name, err)
		}
	}
	m := migrate.NewMigrator(db, ms,
		migrate.WithTableName(name+"_migrations"),
		migrate.WithLocksTableName(name+"_migration_locks"),
		migrate.WithMarkAppliedOnSuccess(true))
	if err := retry(ctx, func() error { return m.Init(ctx) }); err != nil {
		return fmt.Errorf("%s: init migrations: %w", name, err)
	}
	if err := retry(ctx, func() error { return m.Lock(ctx) }); err != nil {
		return fmt.Errorf("%s: lock migrations: %w", name, err)
	}
	_, err := m.Migrate(ctx)
	uerr := m.Unlock(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("%s: migrate: %w", name, err)
	}
	if uerr != nil {
		return fmt.Errorf("%s: unlock migrations: %w", name, uerr)
	}
	return nil
}

// retry runs fn until it succeeds, ctx ends or 30 seconds pass; concurrent
// instances creating the migration tables or holding the lock make fn fail
// for a moment.
func retry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay):
		}
	}
}
