package audit

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration narrows two indexes on PostgreSQL to the values few
// entries carry. Most entries are decisions to allow and the decided and
// delivered events of allowed transfers; an index entry for each of them
// cost every append two of its nine index insertions (about 3.5 µs of the
// server's 31 µs per entry, measured with broker-like appends), and served
// no query: a filter on a value most entries carry is answered faster by
// reading entries in sequence order and skipping the few others, which is
// the plan the server then takes. A filter on a rare value (a denial, a
// rejection, a failed delivery) is still one range scan on the narrowed
// index, which the server can prove covers it.
//
// SQLite keeps both indexes whole: its planner uses a partial index only
// when the query repeats the index's own condition.

// rareIndex is an index narrowed to the rare values of its column.
type rareIndex struct {
	name, cols, where string
	// replaces is the index on the same columns over every entry.
	replaces string
}

var rareIndexes = []rareIndex{
	{"audit_entries_decision_rare_idx", "decision, seq", "decision <> 'allow'", "audit_entries_decision_idx"},
	{"audit_entries_event_rare_idx", "event, seq", "event NOT IN ('decided', 'delivered')", "audit_entries_event_idx"},
}

// concurrentIndexAbove is the number of entries from which the indexes are
// built with CREATE INDEX CONCURRENTLY, which lets appends go on during the
// build, instead of in one transaction, which blocks them while it reads the
// table: a second for a small log, minutes for a large one. A variable so
// that a test can take the concurrent path on a small log.
var concurrentIndexAbove int64 = 100_000

func registerRareValueIndexes(m *migrate.Migrations) error {
	return m.Register(rareValueIndexesUp, rareValueIndexesDown)
}

func rareValueIndexesUp(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	for _, ix := range rareIndexes {
		if err := swapIndex(ctx, db, ix.replaces, ix.name, "("+ix.cols+") WHERE "+ix.where); err != nil {
			return err
		}
	}
	return nil
}

func rareValueIndexesDown(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	for _, ix := range rareIndexes {
		if err := swapIndex(ctx, db, ix.name, ix.replaces, "("+ix.cols+")"); err != nil {
			return err
		}
	}
	return nil
}

// swapIndex creates index create on audit_entries with definition def (the
// column list and any WHERE) and then drops index drop: in one transaction
// on SQLite and on a small log, concurrently on a large one on PostgreSQL
// (concurrentIndexAbove).
func swapIndex(ctx context.Context, db *bun.DB, drop, create, def string) error {
	return replaceIndexes(ctx, db, []indexDef{{"CREATE INDEX", create, def}}, drop)
}

// indexDef is an index of audit_entries to create: the statement ("CREATE
// INDEX" or "CREATE UNIQUE INDEX"), its name and its definition.
type indexDef struct{ create, name, def string }

// replaceIndexes creates the indexes add and then drops the indexes named
// drop that exist, on PostgreSQL: in one transaction on a small log,
// concurrently on a large one (concurrentIndexAbove), as swapIndex.
func replaceIndexes(ctx context.Context, db *bun.DB, add []indexDef, drop ...string) error {
	large, err := largeLog(ctx, db)
	if err != nil {
		return err
	}
	if !large {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			for _, ix := range add {
				if err := createIndex(ctx, tx, ix.create, ix.name, ix.def); err != nil {
					return err
				}
			}
			for _, name := range drop {
				if err := dropIndex(ctx, tx, name, false); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for _, ix := range add {
		if err := buildConcurrently(ctx, db, ix.create, ix.name, ix.def); err != nil {
			return err
		}
	}
	for _, name := range drop {
		if err := dropIndex(ctx, db, name, true); err != nil {
			return err
		}
	}
	return nil
}

// dropIndex drops index name of audit_entries if it exists, CONCURRENTLY
// (PostgreSQL, outside a transaction) or not.
func dropIndex(ctx context.Context, db bun.IDB, name string, concurrently bool) error {
	stmt, how := "DROP INDEX IF EXISTS ?", ""
	if concurrently {
		stmt, how = "DROP INDEX CONCURRENTLY IF EXISTS ?", " concurrently"
	}
	if _, err := db.ExecContext(ctx, stmt, bun.Ident(name)); err != nil {
		return fmt.Errorf("drop index %s%s: %w", name, how, err)
	}
	return nil
}

// createIndex creates index name on audit_entries with definition def by
// the statement create ("CREATE INDEX" or "CREATE UNIQUE INDEX"), unless it
// exists, in one statement that blocks appends while it reads the table:
// for a small log (largeLog), or on SQLite.
func createIndex(ctx context.Context, db bun.IDB, create, name, def string) error {
	if _, err := db.ExecContext(ctx, create+" IF NOT EXISTS ? ON audit_entries "+def, bun.Ident(name)); err != nil {
		return fmt.Errorf("create index %s: %w", name, err)
	}
	return nil
}

// largeLog reports whether db's log is large enough for its indexes to be
// built concurrently (concurrentIndexAbove; PostgreSQL only).
func largeLog(ctx context.Context, db *bun.DB) (bool, error) {
	if !isPostgres(db) {
		return false, nil
	}
	var large bool
	if err := db.NewRaw("SELECT EXISTS (SELECT 1 FROM audit_entries LIMIT 1 OFFSET ?)", concurrentIndexAbove).Scan(ctx, &large); err != nil {
		return false, fmt.Errorf("count entries: %w", err)
	}
	return large, nil
}

// buildConcurrently creates index name on audit_entries with definition def
// by the statement create ("CREATE INDEX" or "CREATE UNIQUE INDEX"),
// CONCURRENTLY, on PostgreSQL.
func buildConcurrently(ctx context.Context, db *bun.DB, create, name, def string) error {
	// A concurrent build that failed (or was stopped) leaves an invalid
	// index behind, which IF NOT EXISTS would take for done: drop it and
	// build again.
	ix, err := lookUpIndex(ctx, db, name)
	if err != nil {
		return err
	}
	if ix.exists && !ix.valid {
		if _, err := db.ExecContext(ctx, "DROP INDEX CONCURRENTLY IF EXISTS ?", bun.Ident(name)); err != nil {
			return fmt.Errorf("drop invalid index %s: %w", name, err)
		}
	}
	if !ix.valid {
		if _, err := db.ExecContext(ctx, create+" CONCURRENTLY IF NOT EXISTS ? ON audit_entries "+def, bun.Ident(name)); err != nil {
			return fmt.Errorf("create index %s concurrently: %w", name, err)
		}
	}
	return nil
}

// indexState is what PostgreSQL's catalog says of an index of the log.
type indexState struct{ exists, valid, unique bool }

// lookUpIndex reads the state of index name in the current schema of db.
func lookUpIndex(ctx context.Context, db bun.IDB, name string) (indexState, error) {
	var rows []struct {
		Valid  bool `bun:"indisvalid"`
		Unique bool `bun:"indisunique"`
	}
	if err := db.NewRaw(`SELECT i.indisvalid, i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE c.relname = ? AND c.relnamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = current_schema())`, name).
		Scan(ctx, &rows); err != nil {
		return indexState{}, fmt.Errorf("look up index %s: %w", name, err)
	}
	if len(rows) != 1 {
		return indexState{}, nil
	}
	return indexState{exists: true, valid: rows[0].Valid, unique: rows[0].Unique}, nil
}
