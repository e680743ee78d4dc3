package audit

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/clearance-broker/clearance/sqlschema"
)

// sqlitePragmas make SQLite durable (synchronous FULL in WAL mode), wait for
// the write lock rather than fail, and take the write lock when a
// transaction begins.
const sqlitePragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(FULL)&_pragma=foreign_keys(ON)&_txlock=immediate"

// OpenDB opens a *bun.DB for a DSN and checks that it answers:
//
//   - "postgres://user@host:port/db?sslmode=disable&search_path=schema"
//     (or "postgresql://"): PostgreSQL through pgdriver and pgdialect;
//   - "sqlite:///path/to/file.db", "sqlite:relative.db" or a plain file path:
//     SQLite through modernc.org/sqlite in WAL mode with synchronous FULL.
//
// The caller closes the DB. The broker and the CLI share this helper.
func OpenDB(ctx context.Context, dsn string) (*bun.DB, error) {
	var db *bun.DB
	target := "pg" // what the ping failure names
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
		db = bun.NewDB(sqldb, pgdialect.New())
	case dsn == "":
		return nil, fmt.Errorf("%w: empty", ErrUnsupportedDSN)
	case strings.Contains(dsn, "://") && !strings.HasPrefix(dsn, "sqlite://"):
		return nil, fmt.Errorf("%w: unknown scheme", ErrUnsupportedDSN)
	default:
		path := sqlitePath(dsn)
		if path == "" || path == ":memory:" {
			return nil, fmt.Errorf("%w: sqlite needs a file path", ErrUnsupportedDSN)
		}
		sqldb, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+sqlitePragmas)
		if err != nil {
			return nil, fmt.Errorf("audit: open sqlite: %w", err)
		}
		db = bun.NewDB(sqldb, sqlitedialect.New())
		target = "sqlite " + strconv.Quote(path)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("audit: connect to %s: %w", target, err)
	}
	return db, nil
}

func sqlitePath(dsn string) string {
	switch {
	case strings.HasPrefix(dsn, "sqlite://"):
		return strings.TrimPrefix(dsn, "sqlite://")
	case strings.HasPrefix(dsn, "sqlite:"):
		return strings.TrimPrefix(dsn, "sqlite:")
	}
	return dsn
}

func isPostgres(db bun.IDB) bool { return db.Dialect().Name() == dialect.PG }

// Migrate brings the audit schema of db up to date. It is idempotent and safe
// to run from several instances at once: a migration lock held by another
// instance is waited for (up to 30 seconds; a lock left by an instance that
// died while migrating stays in audit_migration_locks until removed by
// hand). Open calls it for writable logs.
func Migrate(ctx context.Context, db *bun.DB) error {
	return sqlschema.Migrate(ctx, db, "audit", registerSchemaV1, registerOutcomeIndex, registerChains, registerRareValueIndexes, registerTimeBRIN, registerFinalUnique, registerNarrowKeys, registerRequestFinalIndex)
}
