package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"regexp"
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
//     SQLite through modernc.org/sqlite in WAL mode with synchronous FULL,
//     the file created when it is missing.
//
// A plain file path that reads as a libpq keyword DSN (IsKeywordDSN), or a
// SQLite DSN holding "password=", is refused: it is a Postgres DSN in the
// wrong form, which would otherwise become a SQLite file of that name. No
// error holds a Postgres DSN or a password. The caller closes the DB. The
// broker and the CLI share this helper.
func OpenDB(ctx context.Context, dsn string) (*bun.DB, error) {
	return openDB(ctx, dsn, true)
}

// OpenExistingDB is OpenDB for a store that must exist already: a missing
// SQLite file is an error that matches fs.ErrNotExist, and nothing is
// created. The commands that read a log someone else wrote (clearance
// audit, clearance report) use it: a missing file there is a mistyped
// path, and an empty log made in its place would answer as if nothing had
// been recorded.
func OpenExistingDB(ctx context.Context, dsn string) (*bun.DB, error) {
	return openDB(ctx, dsn, false)
}

func openDB(ctx context.Context, dsn string, create bool) (*bun.DB, error) {
	var db *bun.DB
	target := "pg" // what the ping failure names
	var path string
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		c, err := pgConnector(dsn)
		if err != nil {
			return nil, err
		}
		db = bun.NewDB(sql.OpenDB(c), pgdialect.New())
	case dsn == "":
		return nil, fmt.Errorf("%w: empty", ErrUnsupportedDSN)
	case strings.Contains(dsn, "://") && !strings.HasPrefix(dsn, "sqlite://"):
		return nil, fmt.Errorf("%w: unknown scheme", ErrUnsupportedDSN)
	case IsKeywordDSN(dsn):
		return nil, fmt.Errorf("%w: a libpq keyword DSN (host=... dbname=...), not a SQLite file path; give Postgres as a postgres:// URL", ErrUnsupportedDSN)
	case strings.Contains(strings.ToLower(dsn), "password="):
		return nil, fmt.Errorf("%w: a SQLite file path holding password=; give Postgres as a postgres:// URL", ErrUnsupportedDSN)
	default:
		path = sqlitePath(dsn)
		if path == "" || path == ":memory:" {
			return nil, fmt.Errorf("%w: sqlite needs a file path", ErrUnsupportedDSN)
		}
		query := sqlitePragmas
		if !create {
			// SQLite applies mode only to a file: URI; rw opens the file
			// read-write and fails where it would create it.
			query = "mode=rw&" + query
		}
		sqldb, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+query)
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
		if _, serr := os.Stat(path); path != "" && !create && errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("audit: %s: %w", target, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("audit: connect to %s: %w", target, err)
	}
	return db, nil
}

// pgConnector is pgdriver's connector for dsn. pgdriver panics on a DSN it
// cannot parse, with url.Parse's error, which quotes the whole DSN and so
// any password in it: the DSN is parsed here first, and a panic over what
// else it refuses (an sslmode it does not know) is returned as an error.
func pgConnector(dsn string) (c *pgdriver.Connector, err error) {
	if _, err := url.Parse(dsn); err != nil {
		return nil, fmt.Errorf("%w: not a URL", ErrUnsupportedDSN)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrUnsupportedDSN, r)
		}
	}()
	return pgdriver.NewConnector(pgdriver.WithDSN(dsn)), nil
}

// keywordDSN is a keyword of a libpq keyword/value connection string
// ("host=pg.internal dbname=clearance"): a word at the start or after white
// space, followed by "=".
var keywordDSN = regexp.MustCompile(`(^|\s)[A-Za-z_]+\s*=`)

// IsKeywordDSN reports whether dsn, a DSN without a scheme, reads as a
// libpq keyword/value connection string ("host=pg.internal user=clearance
// dbname=clearance") rather than a SQLite file path: a word followed by
// "=" at its start or after white space. Such a string is a Postgres DSN in
// a form OpenDB does not take, which would otherwise become the name of a
// SQLite file. A SQLite file whose name reads so is given as
// "sqlite:NAME".
func IsKeywordDSN(dsn string) bool {
	if strings.Contains(dsn, "://") || strings.HasPrefix(dsn, "sqlite:") {
		return false
	}
	return keywordDSN.MatchString(dsn)
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
