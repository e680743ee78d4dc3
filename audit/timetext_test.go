package audit

import (
	"errors"
	"testing"
	"time"
)

// TestVerifyTimeText rewrites, on SQLite, where an entry's time is text, the
// time of one entry as the same instant written another way. Its hash still
// matches (the hash covers the instant), but a time-filtered query compares
// the text and no longer finds it: verify must name the entry changed.
func TestVerifyTimeText(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"another zone", "2026-11-28 12:00:00.007+02:00"},
		{"RFC 3339", "2026-11-28T10:00:00.007Z"},
		{"trailing zeros", "2026-11-28 10:00:00.007000+00:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			db := openTestDB(t, sqliteDSN(t))
			l := openTestLog(t, db, testOptions(t))
			appendN(t, l, 0, 10) // entry i+1 at testTime + i ms
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if rep, err := l.Verify(ctx, testSigner(t)); err != nil {
				t.Fatalf("before tampering: %+v, %v", rep, err)
			}
			window := Filter{From: testTime.Add(7 * time.Millisecond), To: testTime.Add(8 * time.Millisecond)}
			if got, err := l.Query(ctx, window); err != nil || len(got) != 1 || got[0].Sequence != 8 {
				t.Fatalf("before tampering: Query() = %v, %v; want entry 8", got, err)
			}
			if _, err := db.ExecContext(ctx, "UPDATE audit_entries SET at = ? WHERE seq = 8", tt.text); err != nil {
				t.Fatal(err)
			}
			if got, err := l.Query(ctx, window); err != nil || len(got) != 0 {
				// The case would prove nothing if the query still found it.
				t.Logf("after tampering: Query() = %d entries, %v", len(got), err)
			}
			rep, err := l.Verify(ctx, testSigner(t))
			var te *TamperError
			if !errors.As(err, &te) || te.Finding != FindingChanged || te.Sequence != 8 {
				t.Fatalf("Verify() = %+v, %v; want entry 8 changed", rep, err)
			}
		})
	}
}

// TestVerifyUnreadableTime changes one entry's stored time to a value the
// store holds but the log cannot read back (a year past 9999, before 1, not
// a time at all): verify must name the entry changed, where it stopped with
// a read error naming none.
func TestVerifyUnreadableTime(t *testing.T) {
	tests := []struct {
		store, text string
	}{
		{"sqlite", "10000-01-01 00:00:00+00:00"},
		{"sqlite", "-0001-01-01 00:00:00+00:00"},
		{"sqlite", "garbage"},
		{"postgres", "10000-01-01 00:00:00+00"},
		{"postgres", "0001-01-01 00:00:00+00 BC"},
		{"postgres", "infinity"},
	}
	for _, tt := range tests {
		t.Run(tt.store+"/"+tt.text, func(t *testing.T) {
			ctx := t.Context()
			dsn := sqliteDSN(t)
			if tt.store == "postgres" {
				dsn = postgresDSN(t)
			}
			db := openTestDB(t, dsn)
			l := openTestLog(t, db, testOptions(t))
			appendN(t, l, 0, 10)
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "UPDATE audit_entries SET at = ? WHERE seq = 8", tt.text); err != nil {
				t.Fatal(err)
			}
			rep, err := l.Verify(ctx, testSigner(t))
			var te *TamperError
			if !errors.As(err, &te) || te.Finding != FindingChanged || te.Sequence != 8 {
				t.Fatalf("Verify() = %+v, %v; want entry 8 changed", rep, err)
			}
		})
	}
}
