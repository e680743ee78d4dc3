package audit

import (
	"errors"
	"net"
	"path/filepath"
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
