package sqlschema

import (
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite"
)

func openSQLite(t *testing.T, path string) *bun.DB {
	t.Helper()
	sqldb, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(sqldb, sqlitedialect.New())
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMigrateConcurrentInstancesApplyOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		db := openSQLite(t, path)
		wg.Go(func() { errs[i] = Migrate(t.Context(), db, "part", widgets) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	db := openSQLite(t, path)
	var applied int
	if err := db.NewRaw("SELECT count(*) FROM part_migrations").Scan(t.Context(), &applied); err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Fatalf("migrations recorded = %d, want 1", applied)
	}
	if err := Migrate(t.Context(), db, "part", widgets); err != nil {
		t.Fatalf("migrating again: %v", err)
	}
}

func TestMigrateErrorNamesThePart(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "store.db"))
	err := Migrate(t.Context(), db, "erasure", broken)
	if err == nil || !strings.HasPrefix(err.Error(), "erasure: migrate: ") {
		t.Fatalf("error = %v, want it to start with %q", err, "erasure: migrate: ")
	}
}
