package audit

import (
	"context"
	"errors"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"
	"github.com/uptrace/bun/migrate"
)

// This migration has PostgreSQL itself keep a request to one final outcome:
// a unique index on request_id over the entries that are final outcomes
// (pgFinal, Entry.Final in SQL). Before it, every batch looked each of its
// final outcomes up (two index range scans per request id, unioned), about
// 13 µs of the server's time per final outcome against 2 µs for the unique
// index's insertion (400-row batches, 200,000 entries, five alternating
// runs: 5.39 s with the look-up, 4.28 s with the index, 4.10 s with
// neither). The writer's single-statement insert now sends no request ids
// to look up when the index is there (finalsIndexed); a second final
// outcome makes the insert fail on the index, and the writer then takes the
// head lock and looks the batch's outcomes up, as before, to refuse the
// duplicate and write the rest.
//
// A log that holds a request with two final outcomes cannot have the index
// (Append never writes one; only an edit of the store can). The migration
// then leaves it out, and the writer goes on looking outcomes up in every
// batch and says so when it connects. SQLite keeps the look-up.

const finalIdx = "audit_entries_final_idx"

// pgFinal is Entry.Final as a condition on a row of audit_entries: a
// delivery_failed is final unless one of its reasons (the JSON array in
// reasons) ends in "transient". TestFinalIndexAgreesWithFinal holds the two
// together.
const pgFinal = `request_id <> '' AND (event IN ('delivered', 'rejected') OR event = 'decided' AND decision = 'deny'` +
	` OR event = 'delivery_failed' AND NOT reasons::jsonb @? '$[*] ? (@ like_regex "transient$")')`

func registerFinalUnique(m *migrate.Migrations) error {
	return m.Register(finalUniqueUp, finalUniqueDown)
}

func finalUniqueUp(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	large, err := largeLog(ctx, db)
	if err != nil {
		return err
	}
	const def = "(request_id) WHERE " + pgFinal
	if large {
		err = buildConcurrently(ctx, db, "CREATE UNIQUE INDEX", finalIdx, def)
	} else {
		err = createIndex(ctx, db, "CREATE UNIQUE INDEX", finalIdx, def)
	}
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) && pgErr.Field('C') == pgUniqueViolation {
		// Two final outcomes of one request: no index (see above). A
		// concurrent build leaves an invalid one behind, dropped here.
		return dropIndex(ctx, db, finalIdx, false)
	}
	return err
}

func finalUniqueDown(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	return dropIndex(ctx, db, finalIdx, false)
}

// finalsIndexed reports whether a unique index keeps one final outcome per
// request on the PostgreSQL connection db and is valid: the request index of
// migration 20261130000002, or the index of final outcomes it replaces.
func finalsIndexed(ctx context.Context, db bun.IDB) (bool, error) {
	for _, name := range []string{requestFinalIdx, finalIdx} {
		ix, err := lookUpIndex(ctx, db, name)
		if err != nil {
			return false, err
		}
		if ix.valid && ix.unique {
			return true, nil
		}
	}
	return false, nil
}
