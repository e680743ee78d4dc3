// Package sqltest gives tests a PostgreSQL schema of their own on the shared
// test server, so that tests of different packages and runs never see each
// other's tables.
package sqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/uptrace/bun/driver/pgdriver"
)

// DefaultAdminDSN is the shared test PostgreSQL that `make test` makes sure
// is running; CLEARANCE_TEST_POSTGRES overrides it.
const DefaultAdminDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresDSN creates a schema named prefix_t_<random hex> on the test
// PostgreSQL (CLEARANCE_TEST_POSTGRES, default DefaultAdminDSN), drops it
// with everything in it when the test ends, and returns a DSN whose
// search_path is that schema. The test fails when PostgreSQL does not
// answer: a test that claims to test Postgres must not pass without it.
func PostgresDSN(tb testing.TB, prefix string) string {
	tb.Helper()
	admin := os.Getenv("CLEARANCE_TEST_POSTGRES")
	if admin == "" {
		admin = DefaultAdminDSN
	}
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(admin)))
	tb.Cleanup(func() { _ = db.Close() })
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := prefix + "_t_" + hex.EncodeToString(rnd[:])
	if _, err := db.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("sqltest: create schema on the test postgres (run scripts/ensure-services.sh): %v", err)
	}
	tb.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("sqltest: drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	if strings.Contains(admin, "?") {
		sep = "&"
	}
	return admin + sep + "search_path=" + schema
}
