package audit

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOpenDBErrors: a DSN OpenDB cannot use, or a store it cannot reach, is
// refused with an error naming what was wrong.
func TestOpenDBErrors(t *testing.T) {
	for _, dsn := range []string{"", "mysql://user@host/db", "sqlite://", "sqlite::memory:"} {
		if _, err := OpenDB(t.Context(), dsn); !errors.Is(err, ErrUnsupportedDSN) {
			t.Errorf("OpenDB(%q) = %v, want ErrUnsupportedDSN", dsn, err)
		}
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir", "audit.db")
	if _, err := OpenDB(t.Context(), "sqlite://"+missing); err == nil || !strings.Contains(err.Error(), `sqlite "`+missing+`"`) {
		t.Errorf("OpenDB in a missing directory = %v, want an error naming %s", err, missing)
	}
	// A port nothing listens on: taken and given back.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := OpenDB(t.Context(), "postgres://nobody@"+addr+"/x?sslmode=disable"); err == nil || !strings.Contains(err.Error(), "connect to pg") {
		t.Errorf("OpenDB on a closed port = %v", err)
	}
}

// TestOpenDBKeywordDSN: a Postgres DSN in libpq's keyword form has no
// scheme, and was taken for the path of a SQLite file, created under that
// name, and named in full (password included) by the error of a failed
// open. It is refused, as is a SQLite DSN holding password=, and the error
// holds neither the DSN nor the password.
func TestOpenDBKeywordDSN(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, dsn := range []string{
		"host=pg.internal user=clearance password=hunter2 dbname=clearance",
		"dbname=clearance",
		"user = clearance  password = hunter2",
		"sqlite:x password=hunter2",
		"postgres://clearance:hunter2@pg internal/clearance",
	} {
		_, err := OpenDB(t.Context(), dsn)
		if !errors.Is(err, ErrUnsupportedDSN) {
			t.Errorf("OpenDB(%q) = %v, want ErrUnsupportedDSN", dsn, err)
		}
		if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "pg.internal")) {
			t.Errorf("OpenDB(%q): the error holds the DSN: %v", dsn, err)
		}
	}
	if files, _ := os.ReadDir(dir); len(files) > 0 {
		t.Errorf("files created for DSNs that are not SQLite paths: %v", files)
	}
	for dsn, want := range map[string]bool{
		"host=pg.internal dbname=clearance": true, "dbname=clearance": true, "a.db port=5432": true,
		"audit.db": false, "/var/lib/clearance/audit=2.db": false, "./data/audit.db": false,
		"sqlite:host=pg.internal": false, "postgres://u@h/db?sslmode=disable": false,
	} {
		if got := IsKeywordDSN(dsn); got != want {
			t.Errorf("IsKeywordDSN(%q) = %v, want %v", dsn, got, want)
		}
	}
}

// TestOpenExistingDB: the audit commands that read a log open it with
// OpenExistingDB, which takes a SQLite file that exists and refuses a
// missing one without creating it, where OpenDB creates it.
func TestOpenExistingDB(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "audit.db")
	for _, dsn := range []string{"sqlite://" + missing, missing} {
		_, err := OpenExistingDB(t.Context(), dsn)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), strconv.Quote(missing)) {
			t.Errorf("OpenExistingDB(%q) = %v, want an error naming the file that matches fs.ErrNotExist", dsn, err)
		}
		if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("OpenExistingDB created %s: %v", missing, err)
		}
	}
	db, err := OpenDB(t.Context(), "sqlite://"+missing)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = OpenExistingDB(t.Context(), "sqlite://"+missing)
	if err != nil {
		t.Fatalf("OpenExistingDB on the file OpenDB created: %v", err)
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE t (x INTEGER)"); err != nil {
		t.Errorf("OpenExistingDB opened the file read-only: %v", err)
	}
	db.Close()
}
