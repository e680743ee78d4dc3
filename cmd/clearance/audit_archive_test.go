package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/internal/pgcut"
)

// TestAuditArchiveCommitOutcome runs clearance audit archive on a Postgres
// log through a proxy that cuts the connection as the archive's COMMIT goes
// out. The archive file is removed only when nothing left the log: kept as
// the archive when the COMMIT took effect, and kept, with the manifest
// printed, when that cannot be found out.
func TestAuditArchiveCommitOutcome(t *testing.T) {
	tests := []struct {
		name         string
		give         pgcut.Cut
		wantCode     int
		wantStderr   []string
		wantFile     bool // the archive file (3 entries) is there afterwards
		wantManifest bool // and its manifest file
		wantEntries  int  // entries left in the log
	}{
		{"commit reaches the server but its reply is lost", pgcut.Forwarded, 0, nil, true, true, 0},
		{"commit never reaches the server", pgcut.Dropped, 1, []string{"archive: commit:"}, false, false, 3},
		{"commit reaches the server which is then unreachable", pgcut.ForwardedThenUnreachable, 1,
			[]string{"outcome of the commit unknown", "entries 1 to 3 may have left the log", "is kept", "entries up to 3 (or further) archived", "eyJ"},
			true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dsn := postgresTestDSN(t)
			archive, jwksFile, archiveKey := archiveFixture(t, dir, dsn)

			var out, errOut bytes.Buffer
			code := run(t.Context(), []string{"audit", "archive", "--db", pgcut.Start(t, dsn, tt.give), "--jwks", jwksFile,
				"--older-than", "1h", "--out", archive, "--signing-key", archiveKey}, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.wantCode, out.String(), errOut.String())
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
				}
			}
			data, err := os.ReadFile(archive)
			if tt.wantFile && (err != nil || bytes.Count(data, []byte("\n")) != 3) {
				t.Errorf("the archive of the 3 entries: %d bytes, %v", len(data), err)
			}
			if !tt.wantFile && err == nil {
				t.Error("archive file left behind, though nothing left the log")
			}
			if _, err := os.Stat(archive + ".manifest.jws"); (err == nil) != tt.wantManifest {
				t.Errorf("manifest file: %v, want it there: %v", err, tt.wantManifest)
			}
			db, err := audit.OpenDB(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var entries int
			if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM audit_entries").Scan(&entries); err != nil || entries != tt.wantEntries {
				t.Errorf("%d entries left in the log (%v), want %d", entries, err, tt.wantEntries)
			}
		})
	}
}

// postgresTestDSN creates a schema of its own in the test Postgres
// (CLEARANCE_TEST_POSTGRES, or the local one), drops it in cleanup, and
// returns a DSN whose search_path is that schema.
func postgresTestDSN(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("CLEARANCE_TEST_POSTGRES")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	db, err := audit.OpenDB(context.Background(), admin)
	if err != nil {
		t.Fatalf("postgres for tests: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "cli_t_" + hex.EncodeToString(rnd[:])
	if _, err := db.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
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
