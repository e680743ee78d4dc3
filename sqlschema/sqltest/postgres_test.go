package sqltest

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/uptrace/bun/driver/pgdriver"
)

func TestPostgresDSNGivesAnOwnSchemaAndDropsIt(t *testing.T) {
	var schema string
	t.Run("use", func(t *testing.T) {
		dsn := PostgresDSN(t, "sqltest")
		db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
		defer db.Close()
		if err := db.QueryRow("SELECT current_schema()").Scan(&schema); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(schema, "sqltest_t_") {
			t.Fatalf("current_schema = %q, want a sqltest_t_ schema", schema)
		}
		if _, err := db.Exec("CREATE TABLE t (id int)"); err != nil {
			t.Fatal(err)
		}
	})
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(DefaultAdminDSN)))
	defer db.Close()
	var n int
	if err := db.QueryRowContext(context.Background(),
		"SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("schema %s still exists after the test", schema)
	}
}
