package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

// pgAdminDSN is the shared test Postgres; CLEARANCE_TEST_POSTGRES overrides it.
func pgAdminDSN() string {
	if dsn := os.Getenv("CLEARANCE_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

var testSubjectKey = []byte("test-subject-hmac-key-32-bytes!!")

// backend opens a fresh, empty store for one test and returns its DSN.
type backend struct {
	name string
	dsn  func(tb testing.TB) string
}

var backends = []backend{
	{"sqlite", sqliteDSN},
	{"postgres", postgresDSN},
}

func sqliteDSN(tb testing.TB) string {
	tb.Helper()
	return "sqlite://" + filepath.Join(tb.TempDir(), "audit.db")
}

// postgresDSN creates a unique schema, drops it in cleanup, and returns a
// DSN whose search_path is that schema and whose application_name lets a
// test find (and terminate) its backends.
func postgresDSN(tb testing.TB) string {
	return postgresDSNWith(tb, "")
}

// postgresDSNWith is postgresDSN with extra DSN parameters ("k=v&k=v").
func postgresDSNWith(tb testing.TB, params string) string {
	tb.Helper()
	ctx := context.Background()
	admin, err := OpenDB(ctx, withParams(pgAdminDSN(), "read_timeout=120"))
	if err != nil {
		tb.Fatalf("postgres for tests: %v", err)
	}
	tb.Cleanup(func() { _ = admin.Close() })
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "audit_t_" + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema: %v", err)
		}
	})
	dsn := withParams(pgAdminDSN(), "search_path="+schema+"&application_name="+schema)
	if params != "" {
		dsn = withParams(dsn, params)
	}
	return dsn
}

func withParams(dsn, params string) string {
	if strings.Contains(dsn, "?") {
		return dsn + "&" + params
	}
	return dsn + "?" + params
}

func openTestDB(tb testing.TB, dsn string) *bun.DB {
	tb.Helper()
	db, err := OpenDB(context.Background(), dsn)
	if err != nil {
		tb.Fatalf("open db: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// testSigner is a fixed Ed25519 development signer, so that golden files and
// separate logs share one key.
func testSigner(tb testing.TB) *LocalSigner {
	tb.Helper()
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "clearance audit test signing key")
	s, err := NewLocalSigner(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func testOptions(tb testing.TB) Options {
	return Options{SubjectKey: testSubjectKey, Signer: testSigner(tb), CheckpointInterval: time.Hour}
}

func openTestLog(tb testing.TB, db *bun.DB, opts Options) *Log {
	tb.Helper()
	l, err := Open(context.Background(), db, opts)
	if err != nil {
		tb.Fatalf("open log: %v", err)
	}
	tb.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

var testTime = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// decidedEntry is a realistic decision entry for request i.
func decidedEntry(i int) *Entry {
	return &Entry{
		Time:             testTime.Add(time.Duration(i) * time.Millisecond),
		Event:            EventDecided,
		RequestID:        fmt.Sprintf("ord-%d-delivery", 10000+i),
		Source:           "order-service",
		Recipient:        "swiftship-de",
		RecipientCountry: "DE",
		Origin:           "DE",
		Purpose:          "delivery",
		Dataset:          "order.delivery",
		Decision:         "allow",
		Reasons:          []string{},
		LegalBasis:       "contract",
		AgreementID:      "dpa-swiftship-de",
		AgreementVersion: 2,
		Mechanism:        "domestic",
		CategoriesSent:   []string{"contact.address", "identity.name", "order.reference"},
		FieldsRemoved:    map[string]string{"email": "category_not_permitted"},
		KeyRef:           "transit:clearance-data",
		PayloadDigest:    Digest([]byte(fmt.Sprintf("sealed-%d", i))),
		RegistryVersion:  "sha256:" + strings.Repeat("ab", 32),
		SubjectID:        fmt.Sprintf("cust-%d", i%7),
	}
}

func appendN(tb testing.TB, l *Log, from, n int) {
	tb.Helper()
	for i := from; i < from+n; i++ {
		if _, err := l.Append(context.Background(), decidedEntry(i)); err != nil {
			tb.Fatalf("append %d: %v", i, err)
		}
	}
}

// onBothIndexPaths runs fn as two subtests: "small", where the migrations
// build indexes in a transaction, and "concurrent", where they take the
// path of a large log (CREATE INDEX CONCURRENTLY, concurrentIndexAbove 0).
func onBothIndexPaths(t *testing.T, fn func(t *testing.T)) {
	for _, path := range []string{"small", "concurrent"} {
		t.Run(path, func(t *testing.T) {
			if path == "concurrent" {
				buildIndexesConcurrently(t)
			}
			fn(t)
		})
	}
}

// queryPlan returns PostgreSQL's plan, as JSON, of the statement Query runs
// for one page of f on l, with each of settings ("enable_seqscan = off")
// in force for it alone.
func queryPlan(t *testing.T, db *bun.DB, l *Log, f Filter, settings ...string) string {
	t.Helper()
	q, err := l.apply(db.NewSelect().Model((*entryRow)(nil)), &f)
	if err != nil {
		t.Fatal(err)
	}
	var plan string
	err = db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		for _, s := range settings {
			if _, err := tx.ExecContext(ctx, "SET LOCAL "+s); err != nil {
				return err
			}
		}
		return tx.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+q.Limit(DefaultLimit).String()).Scan(&plan)
	})
	if err != nil {
		t.Fatalf("plan of %+v: %v", f, err)
	}
	return plan
}

// buildIndexesConcurrently has the migrations take the path of a large log
// (CREATE INDEX CONCURRENTLY) until t ends.
func buildIndexesConcurrently(t *testing.T) {
	n := concurrentIndexAbove
	concurrentIndexAbove = 0
	t.Cleanup(func() { concurrentIndexAbove = n })
}
