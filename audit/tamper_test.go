package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

// rehash lets a tamper case play an attacker who rewrites an entry and
// recomputes its hash (but cannot sign).
func rehash(ctx context.Context, db *bun.DB, seq int64, change func(*Entry)) error {
	var r entryRow
	if err := db.NewSelect().Model(&r).Where("seq = ?", seq).Scan(ctx); err != nil {
		return err
	}
	e, err := r.entry()
	if err != nil {
		return err
	}
	change(&e)
	e.Hash = computeHash(&e)
	row := toRow(&e)
	_, err = db.NewUpdate().Model(&row).WherePK().Exec(ctx)
	return err
}

// rewriteFrom rewrites the chain from seq to the head consistently,
// including the head row: only a signed checkpoint can tell.
func rewriteFrom(ctx context.Context, db *bun.DB, seq int64) error {
	var seqs []int64
	if err := db.NewSelect().Model((*entryRow)(nil)).Column("seq").Where("seq >= ?", seq).Order("seq").Scan(ctx, &seqs); err != nil {
		return err
	}
	return rewriteChain(ctx, db, 0, seqs)
}

func execSQL(query string) func(context.Context, *bun.DB) error {
	return func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, query)
		return err
	}
}

// copyRowAs inserts a copy of entry 20 under another sequence number.
const copyRowAs = `INSERT INTO audit_entries (seq, at, event, request_id, source, recipient,
 recipient_country, origin, purpose, dataset, decision, reasons, legal_basis, agreement_id,
 agreement_version, mechanism, categories_sent, fields_removed, key_ref, payload_digest,
 registry_version, subject_hmac, prev_hash, hash)
 SELECT %d, at, event, request_id, source, recipient, recipient_country, origin, purpose,
 dataset, decision, reasons, legal_basis, agreement_id, agreement_version, mechanism,
 categories_sent, fields_removed, key_ref, payload_digest, registry_version, subject_hmac,
 hash, hash FROM audit_entries WHERE seq = 20`

// TestTamper changes, removes and inserts rows behind the log's back with
// SQL; Verify must name the first entry concerned. The log holds 20 entries
// with a signed checkpoint at 10 and 20.
func TestTamper(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(context.Context, *bun.DB) error
		finding Finding
		seq     int64
	}{
		{"update a field", execSQL("UPDATE audit_entries SET recipient = 'elsewhere' WHERE seq = 7"), FindingChanged, 7},
		{"update a number", execSQL("UPDATE audit_entries SET agreement_version = 3 WHERE seq = 15"), FindingChanged, 15},
		{"update a field and rehash it", func(ctx context.Context, db *bun.DB) error {
			return rehash(ctx, db, 7, func(e *Entry) { e.Decision = "deny" })
		}, FindingChanged, 7},
		{"rewrite the chain consistently", func(ctx context.Context, db *bun.DB) error {
			return rewriteFrom(ctx, db, 14)
		}, FindingChanged, 11},
		{"delete a row", execSQL("DELETE FROM audit_entries WHERE seq = 12"), FindingRemoved, 12},
		{"delete the first row", execSQL("DELETE FROM audit_entries WHERE seq = 1"), FindingRemoved, 1},
		{"delete the last row", execSQL("DELETE FROM audit_entries WHERE seq = 20"), FindingRemoved, 20},
		{"insert a row after the head", execSQL(fmt.Sprintf(copyRowAs, 21)), FindingInserted, 21},
		{"insert a row before the start", execSQL(fmt.Sprintf(copyRowAs, 0)), FindingInserted, 0},
		{"replace a row", func(ctx context.Context, db *bun.DB) error {
			if _, err := db.ExecContext(ctx, "DELETE FROM audit_entries WHERE seq = 5"); err != nil {
				return err
			}
			return execSQL(fmt.Sprintf(copyRowAs, 5))(ctx, db)
		}, FindingChanged, 5},
		{"forge a checkpoint row", execSQL("UPDATE audit_checkpoints SET head = 'forged' WHERE seq = 10"), FindingBadCheckpoint, 10},
		// Entry 10 is sealed by its checkpoint as it is: the entry after it,
		// whose link changed, is the one named.
		{"relink the entry after a checkpoint and rehash it", func(ctx context.Context, db *bun.DB) error {
			return rehash(ctx, db, 11, func(e *Entry) { e.PrevHash = strings.Repeat("ab", 32) })
		}, FindingChanged, 11},
		{"relink an entry and rehash it", func(ctx context.Context, db *bun.DB) error {
			return rehash(ctx, db, 7, func(e *Entry) { e.PrevHash = strings.Repeat("ab", 32) })
		}, FindingChanged, 6},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ctx := t.Context()
					db := openTestDB(t, b.dsn(t))
					opts := testOptions(t)
					opts.CheckpointEvery = 1 << 30
					l := openTestLog(t, db, opts)
					appendN(t, l, 1, 10)
					if _, err := l.Checkpoint(ctx); err != nil {
						t.Fatal(err)
					}
					appendN(t, l, 11, 10)
					if _, err := l.Checkpoint(ctx); err != nil {
						t.Fatal(err)
					}
					if rep, err := l.Verify(ctx, testSigner(t)); err != nil || rep.Checkpoints != 2 {
						t.Fatalf("before tampering: %+v, %v", rep, err)
					}
					if err := tt.tamper(ctx, db); err != nil {
						t.Fatalf("tamper: %v", err)
					}
					rep, err := l.Verify(ctx, testSigner(t))
					var te *TamperError
					if !errors.As(err, &te) || !errors.Is(err, ErrTampered) {
						t.Fatalf("Verify() = %+v, %v; want a tamper error", rep, err)
					}
					if te.Finding != tt.finding || te.Sequence != tt.seq || rep.Problem != te {
						t.Errorf("Verify() found %s at %d (%s), want %s at %d", te.Finding, te.Sequence, te.Detail, tt.finding, tt.seq)
					}
				})
			}
		})
	}
}

// TestVerifyProgress checks the walk's progress reports: every
// ProgressEvery entries and once at the end, counting the entries checked,
// with the total the chain heads gave, also from an archive's anchor.
func TestVerifyProgress(t *testing.T) {
	ctx := context.Background()
	l := openTestLog(t, openTestDB(t, sqliteDSN(t)), testOptions(t))
	// Entries 1-12 before the archive's horizon, sealed, and 13-25 an
	// hour after it.
	appendN(t, l, 0, 12)
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 12; i < 25; i++ {
		e := decidedEntry(i)
		e.Time = e.Time.Add(time.Hour)
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	walk := func() []Progress {
		t.Helper()
		var got []Progress
		rep, err := l.VerifyWith(ctx, testSigner(t), VerifyOptions{ProgressEvery: 10, Progress: func(p Progress) { got = append(got, p) }})
		if err != nil {
			t.Fatal(err)
		}
		if last := got[len(got)-1]; last.Entries != rep.Entries || last.Sequence != rep.LastSequence {
			t.Fatalf("last report %+v, report %+v", last, rep)
		}
		return got
	}
	want := []Progress{{10, 10, 25}, {20, 20, 25}, {25, 25, 25}}
	if got := walk(); !reflect.DeepEqual(got, want) {
		t.Fatalf("progress %+v, want %+v", got, want)
	}
	if m, _, err := l.Archive(ctx, nil, testTime.Add(time.Minute), io.Discard); err != nil || m.ToSequence != 12 {
		t.Fatalf("archive: %+v %v", m, err)
	}
	want = []Progress{{10, 22, 13}, {13, 25, 13}}
	if got := walk(); !reflect.DeepEqual(got, want) {
		t.Fatalf("progress after an archive %+v, want %+v", got, want)
	}
}
