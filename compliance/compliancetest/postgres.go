package compliancetest

import (
	"testing"

	"github.com/clearance-broker/clearance/sqlschema/sqltest"
)

// PostgresDSN gives the test a schema of its own on the test PostgreSQL
// (sqltest.PostgresDSN) and returns a DSN using it.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	return sqltest.PostgresDSN(tb, "compliance")
}
