package audit

import (
	"context"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This migration narrows the keys of the two indexes whose entries land in
// random places, on PostgreSQL. Every append inserts into each of them at a
// leaf of its own (a subject's HMAC and a request id follow no order), so
// their size decides how much of them stays in memory and how many pages a
// checkpoint makes the next appends write whole to the WAL:
//
//   - the subject index keys a 64-bit hash of the HMAC (hashtextextended)
//     instead of its 64 hex digits (15 against 46 MiB at 350,000 entries).
//     Query compares both, the hash for the index and the HMAC itself, so a
//     collision of hashes costs a heap fetch, never a wrong entry;
//   - the request id index goes back to (request_id, seq), which migration
//     20261129000001 had widened with event and decision so that the look-up
//     of recorded final outcomes in every batch read the index alone. With
//     the unique index of final outcomes (20261129000005) the writer looks
//     nothing up in a batch; only a redelivery and the locked path do,
//     through heap fetches. A log without that index (it holds duplicate
//     final outcomes) keeps the wide one.
//
// Measured in psql (400-row batches of broker-like entries, 350,000 entries
// with the log's other indexes, alternating runs) and in the load harness:
// BENCHMARKS.md, finding 49. SQLite keeps its indexes (it has no
// hashtextextended).

const subjectKeyIdx = "audit_entries_subject_key_idx"

// subjectIdxV1 is the first migration's index on (subject_hmac, seq).
const subjectIdxV1 = "audit_entries_subject_idx"

// pgSubjectKey is the key of subjectKeyIdx: Query's condition repeats it.
const pgSubjectKey = "hashtextextended(subject_hmac, 0)"

func registerNarrowKeys(m *migrate.Migrations) error {
	return m.Register(narrowKeysUp, narrowKeysDown)
}

func narrowKeysUp(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	if err := swapIndex(ctx, db, subjectIdxV1, subjectKeyIdx, "("+pgSubjectKey+", seq)"); err != nil {
		return err
	}
	indexed, err := finalsIndexed(ctx, db)
	if err != nil || !indexed {
		return err
	}
	return swapIndex(ctx, db, requestIdxV2, requestIdxV1, "(request_id, seq)")
}

func narrowKeysDown(ctx context.Context, db *bun.DB) error {
	if !isPostgres(db) {
		return nil
	}
	narrow, err := lookUpIndex(ctx, db, requestIdxV1)
	if err != nil {
		return err
	}
	if narrow.exists {
		if err := swapIndex(ctx, db, requestIdxV1, requestIdxV2, "(request_id, seq, event, decision)"); err != nil {
			return err
		}
	}
	return swapIndex(ctx, db, subjectKeyIdx, subjectIdxV1, "(subject_hmac, seq)")
}
