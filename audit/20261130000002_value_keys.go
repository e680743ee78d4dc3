package audit

import (
	"context"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration keys the indexes of the three few-valued columns that every
// entry carries (recipient, recipient country, purpose) on a 64-bit hash of
// the value (hashtextextended), as migration 20261130000001 keys the
// subject's, on PostgreSQL. Each append descends each of these B-trees to
// the right end of its value's range; comparing the text on every level
// cost more than the insertion itself: in psql, 200,000 rows into a table
// with the three indexes, six alternating runs, 2.6 µs per index insertion
// with text keys against 1.7 with hashed ones (BENCHMARKS.md, finding 56).
//
// Query compares both, the hash for the index and the value itself, so a
// collision of hashes costs a heap fetch, never a wrong entry; the entries
// of one value still lie in sequence order, so a filtered page is an index
// range scan as before. SQLite keeps its indexes (it has no
// hashtextextended).

// valueKeys are the columns whose PostgreSQL index keys a hash of the value,
// with the index of each before (textIdx, on (column, seq)) and after.
var valueKeys = []struct{ col, textIdx, keyIdx string }{
	{"recipient", "audit_entries_recipient_idx", "audit_entries_recipient_key_idx"},
	{"recipient_country", "audit_entries_country_idx", "audit_entries_country_key_idx"},
	{"purpose", "audit_entries_purpose_idx", "audit_entries_purpose_key_idx"},
}

func registerValueKeys(m *migrate.Migrations) error {
	return m.Register(valueKeysUp, valueKeysDown)
}

func valueKeysUp(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	for _, k := range valueKeys {
		if err := swapIndex(ctx, db, k.textIdx, k.keyIdx, "("+pgKey(k.col)+", seq)"); err != nil {
			return err
		}
	}
	return nil
}

func valueKeysDown(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	for _, k := range valueKeys {
		if err := swapIndex(ctx, db, k.keyIdx, k.textIdx, "("+k.col+", seq)"); err != nil {
			return err
		}
	}
	return nil
}

// pgKey is the key a PostgreSQL index of column col holds in place of its
// text: a 64-bit hash of it. Query's condition repeats it (pgKeyed).
func pgKey(col string) string {
	return "hashtextextended(" + col + ", 0)"
}

// pgKeyed tells the columns whose PostgreSQL index keys pgKey: the subject's
// (migration 20261130000001) and valueKeys'.
var pgKeyed = map[string]bool{"subject_hmac": true, "recipient": true, "recipient_country": true, "purpose": true}
