package compliancetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/audit"
)

// PostgresDSN creates a schema of its own on the shared test PostgreSQL
// (CLEARANCE_TEST_POSTGRES, default postgres://postgres@127.0.0.1:5432/test),
// drops it when the test ends, and returns a DSN whose search_path is it.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("CLEARANCE_TEST_POSTGRES")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx := context.Background()
	db, err := audit.OpenDB(ctx, admin)
	if err != nil {
		t.Fatalf("postgres for tests: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "compliance_t_" + hex.EncodeToString(rnd[:])
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	sep := "?"
	if strings.Contains(admin, "?") {
		sep = "&"
	}
	return admin + sep + "search_path=" + schema
}
