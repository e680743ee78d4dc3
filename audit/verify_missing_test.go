package audit

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

// cadenceOptions hold a log to a checkpoint every 10 entries (runs of up to
// 15 tolerated) and every minute (entries up to 2 minutes old tolerated).
var cadenceOptions = VerifyOptions{CheckpointEvery: 10, CheckpointSlack: 5, CheckpointInterval: time.Minute, Grace: time.Minute}

// writeCadenceLog writes 45 entries at testTime to db with a signed
// checkpoint after every 10, as a log with that cadence would, leaving 41-45
// as the legitimate unsealed tail.
func writeCadenceLog(t *testing.T, db *bun.DB) {
	t.Helper()
	opts := testOptions(t)
	opts.CheckpointEvery = 1 << 30
	opts.Now = func() time.Time { return testTime }
	l := openTestLog(t, db, opts)
	for from := 1; from <= 31; from += 10 {
		appendN(t, l, from, 10)
		if _, err := l.Checkpoint(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, l, 41, 5)
}

// readerAt opens db read-only, as clearance audit verify does, with its
// clock at now.
func readerAt(t *testing.T, db *bun.DB, now time.Time) *Log {
	t.Helper()
	return openTestLog(t, db, Options{Now: func() time.Time { return now }})
}

// checkNoPersonalData fails t if the problem's text holds entry content.
func checkNoPersonalData(t *testing.T, te *TamperError) {
	t.Helper()
	for _, s := range []string{"cust-", "ord-", "swiftship", "elsewhere", "delivery"} {
		if strings.Contains(te.Error(), s) {
			t.Errorf("problem %q holds entry content %q", te.Error(), s)
		}
	}
}

// TestVerifyMissingCheckpoints rewrites the chain and removes the
// checkpoints that would tell, as a thief with write access to the store
// can; Verify must name the entries left unsealed, while a log whose only
// unsealed entries are its newest, within the cadence, verifies.
func TestVerifyMissingCheckpoints(t *testing.T) {
	young, old := testTime.Add(time.Minute), testTime.Add(time.Hour)
	tests := []struct {
		name    string
		tamper  func(context.Context, *bun.DB) error
		now     time.Time
		finding Finding // "" for none
		first   int64
		last    int64 // 0: a single entry
		detail  string
	}{
		{"healthy with an unsealed tail", nil, young, "", 0, 0, ""},
		{"tail left unsealed past the interval", nil, old, FindingUnsealed, 41, 45, "some older than 2m0s"},
		{"rewrite the chain and delete every checkpoint", func(ctx context.Context, db *bun.DB) error {
			if err := rewriteFrom(ctx, db, 14); err != nil {
				return err
			}
			return execSQL("DELETE FROM audit_checkpoints")(ctx, db)
		}, young, FindingUnsealed, 1, 45, "checkpoints are missing"},
		{"rewrite the chain and delete the checkpoints after it", func(ctx context.Context, db *bun.DB) error {
			if err := rewriteFrom(ctx, db, 14); err != nil {
				return err
			}
			return execSQL("DELETE FROM audit_checkpoints WHERE seq > 10")(ctx, db)
		}, young, FindingUnsealed, 11, 45, "entries 11 to 45 (35 of them) follow the last checkpoint"},
		// The rewritten tail is no longer than the cadence allows, but
		// older than the interval: checkpoints would have sealed it.
		{"rewrite the tail and delete its checkpoint", func(ctx context.Context, db *bun.DB) error {
			if err := rewriteFrom(ctx, db, 34); err != nil {
				return err
			}
			return execSQL("DELETE FROM audit_checkpoints WHERE seq > 30")(ctx, db)
		}, old, FindingUnsealed, 31, 45, "the tail was never sealed"},
		{"rewrite the chain between two checkpoints", func(ctx context.Context, db *bun.DB) error {
			return rewriteFrom(ctx, db, 14)
		}, young, FindingChanged, 11, 20, "an entry from 11 to 20 was changed"},
		{"change an entry's content", execSQL("UPDATE audit_entries SET recipient = 'elsewhere' WHERE seq = 15"), young,
			FindingChanged, 15, 0, "content does not match"},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ctx := t.Context()
					db := openTestDB(t, b.dsn(t))
					writeCadenceLog(t, db)
					if tt.tamper != nil {
						if err := tt.tamper(ctx, db); err != nil {
							t.Fatalf("tamper: %v", err)
						}
					}
					rep, err := readerAt(t, db, tt.now).VerifyWith(ctx, testSigner(t), cadenceOptions)
					if tt.finding == "" {
						if err != nil || rep.Unsealed != 5 || rep.Checkpoints != 4 {
							t.Fatalf("VerifyWith() = %+v, %v; want OK, 4 checkpoints, an unsealed tail of 5", rep, err)
						}
						return
					}
					var te *TamperError
					if !errors.As(err, &te) || !errors.Is(err, ErrTampered) || rep.Problem != te {
						t.Fatalf("VerifyWith() = %+v, %v; want %s", rep, err, tt.finding)
					}
					if te.Finding != tt.finding || te.Sequence != tt.first || rep.ProblemLast != tt.last {
						t.Errorf("found %s at %d to %d (%s), want %s at %d to %d", te.Finding, te.Sequence, rep.ProblemLast,
							te.Detail, tt.finding, tt.first, tt.last)
					}
					if !strings.Contains(te.Detail, tt.detail) {
						t.Errorf("detail %q lacks %q", te.Detail, tt.detail)
					}
					checkNoPersonalData(t, te)
				})
			}
		})
	}
}

// TestVerifyMissingCheckpointsCadence checks that the cadence is the
// caller's: without CheckpointInterval the tail's age is not checked, and
// without CheckpointEvery the Log's own is taken.
func TestVerifyMissingCheckpointsCadence(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, sqliteDSN(t))
	writeCadenceLog(t, db)
	if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		log     Options
		opts    VerifyOptions
		wantErr bool
	}{
		{"the log's checkpoint_every, 1000 by default", Options{}, VerifyOptions{}, false},
		{"the log's checkpoint_every, 10", Options{CheckpointEvery: 10}, VerifyOptions{CheckpointSlack: 5}, true},
		{"runs unchecked", Options{CheckpointEvery: 10}, VerifyOptions{CheckpointEvery: -1}, false},
		{"age unchecked without an interval", Options{}, VerifyOptions{CheckpointEvery: 100}, false},
		{"age checked with an interval", Options{}, VerifyOptions{CheckpointEvery: 100, CheckpointInterval: time.Minute}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.log.Now = func() time.Time { return testTime.Add(time.Hour) }
			_, err := openTestLog(t, db, tt.log).VerifyWith(ctx, testSigner(t), tt.opts)
			var te *TamperError
			if got := errors.As(err, &te) && te.Finding == FindingUnsealed; got != tt.wantErr || (!got && err != nil) {
				t.Errorf("VerifyWith() = %v; want unsealed: %v", err, tt.wantErr)
			}
		})
	}
}

// TestVerifyMissingAfterRetention archives part of a log with a horizon
// that falls between two checkpoints: the entries kept after the anchor
// must not count as unsealed, and a rewrite with the checkpoints removed
// after the archive must still be found.
func TestVerifyMissingAfterRetention(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			db := openTestDB(t, b.dsn(t))
			writeCadenceLog(t, db)
			// Entries 1-25 are older than the horizon: the archive takes
			// those that the checkpoints at 10 and 20 seal, 1-20.
			if _, err := db.ExecContext(ctx, "UPDATE audit_entries SET at = ? WHERE seq <= 25", testTime.Add(-48*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := rewriteFrom(ctx, db, 1); err != nil { // rehash the entries whose time moved
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints"); err != nil {
				t.Fatal(err)
			}
			opts := testOptions(t)
			opts.CheckpointEvery = 1 << 30
			opts.Now = func() time.Time { return testTime }
			w := openTestLog(t, db, opts)
			// Sealed again as written: a checkpoint every 10 entries.
			if err := resealEvery(ctx, db, w, 10, 40); err != nil {
				t.Fatal(err)
			}
			m, _, err := w.Archive(ctx, nil, testTime.Add(-24*time.Hour), io.Discard)
			if err != nil || m == nil || m.ToSequence != 20 {
				t.Fatalf("archive: %+v, %v", m, err)
			}
			rep, err := readerAt(t, db, testTime.Add(time.Minute)).VerifyWith(ctx, testSigner(t), cadenceOptions)
			if err != nil || rep.Anchor != 20 || rep.Checkpoints != 2 || rep.Unsealed != 5 {
				t.Fatalf("after archiving: %+v, %v", rep, err)
			}
			if err := rewriteFrom(ctx, db, 33); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints"); err != nil {
				t.Fatal(err)
			}
			rep, err = readerAt(t, db, testTime.Add(time.Minute)).VerifyWith(ctx, testSigner(t), cadenceOptions)
			var te *TamperError
			if !errors.As(err, &te) || te.Finding != FindingUnsealed || te.Sequence != 21 || rep.ProblemLast != 45 {
				t.Fatalf("rewritten after archiving: %+v, %v; want entries 21 to 45 unsealed", rep, err)
			}
		})
	}
}

// resealEvery signs, with w's signer, a checkpoint of the chain at every
// multiple of every up to to, as the log would have written them.
func resealEvery(ctx context.Context, db *bun.DB, w *Log, every, to int64) error {
	for seq := every; seq <= to; seq += every {
		var r entryRow
		if err := db.NewSelect().Model(&r).Where("seq = ?", seq).Scan(ctx); err != nil {
			return err
		}
		payload := mustJSON(Checkpoint{Sequence: seq, Head: r.Hash})
		sigs, err := w.opts.Signer.Sign(ctx, [][]byte{[]byte(payload)})
		if err != nil {
			return err
		}
		row := checkpointRow{Seq: seq, Head: r.Hash, At: testTime, JWS: string(sigs[0])}
		if _, err := db.NewInsert().Model(&row).Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// TestVerifyMissingCheckpointsChains removes the checkpoints of one chain
// of a forked log and rewrites that chain. The other chain's checkpoints
// record its heads (Checkpoint.Chains), so the rewrite is named where the
// first of them no longer matches; checkpoints signed before they did
// cover only their own chain, and the rewritten chain must not hide behind
// them: its entries are unsealed.
func TestVerifyMissingCheckpointsChains(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before bool // the checkpoints were signed before they named every chain
	}{{"checkpoints naming every chain", false}, {"checkpoints from before", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			db, l := writeForkedLog(t)
			if tc.before {
				if err := resignOwnChainOnly(ctx, db, l); err != nil {
					t.Fatal(err)
				}
			}
			if rep, err := readerAt(t, db, testTime.Add(time.Minute)).VerifyWith(ctx, testSigner(t), cadenceOptions); err != nil || rep.Unsealed != 0 {
				t.Fatalf("before tampering: %+v, %v", rep, err)
			}
			seqs := chainSeqs(t, db, 1)
			if len(seqs) <= 15 {
				t.Fatalf("chain 1 holds %d entries; the test needs more than 15", len(seqs))
			}
			ly, err := loadLayout(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints WHERE seq > ? AND (seq - ?) % 2 = 1", ly.fork, ly.fork); err != nil {
				t.Fatal(err)
			}
			if err := rewriteChain(ctx, db, 1, seqs); err != nil {
				t.Fatal(err)
			}
			rep, err := readerAt(t, db, testTime.Add(time.Minute)).VerifyWith(ctx, testSigner(t), cadenceOptions)
			var te *TamperError
			want, last := FindingChanged, int64(0)
			if tc.before {
				want, last = FindingUnsealed, seqs[len(seqs)-1]
			}
			if !errors.As(err, &te) || te.Finding != want || te.Sequence != seqs[0] || (last != 0 && rep.ProblemLast != last) {
				t.Fatalf("VerifyWith() = %+v, %v; want %s from entry %d", rep, err, want, seqs[0])
			}
			checkNoPersonalData(t, te)
		})
	}
}

// writeForkedLog writes, on a Postgres database of its own, 5 entries as
// one chain, then 60 more as two chains with a checkpoint after every 6,
// and returns the database and the log, still open.
func writeForkedLog(t *testing.T) (*bun.DB, *Log) {
	t.Helper()
	db := openTestDB(t, postgresDSN(t))
	opts := testOptions(t)
	opts.CheckpointEvery = 1 << 30
	opts.Now = func() time.Time { return testTime }
	single := openTestLog(t, db, opts)
	appendN(t, single, 1, 5)
	if err := single.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	opts.Chains = 2
	l := openTestLog(t, db, opts)
	for from := 6; from < 66; from += 6 {
		appendN(t, l, from, 6)
		if _, err := l.Checkpoint(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return db, l
}

// resignOwnChainOnly signs every checkpoint of db again, with w's signer,
// as checkpoints were signed before they named every chain's head.
func resignOwnChainOnly(ctx context.Context, db *bun.DB, w *Log) error {
	var rows []checkpointRow
	if err := db.NewSelect().Model(&rows).Scan(ctx); err != nil {
		return err
	}
	for _, r := range rows {
		sigs, err := w.opts.Signer.Sign(ctx, [][]byte{[]byte(mustJSON(Checkpoint{Sequence: r.Seq, Head: r.Head}))})
		if err != nil {
			return err
		}
		if _, err := db.NewUpdate().Model((*checkpointRow)(nil)).Set("jws = ?", string(sigs[0])).Where("seq = ?", r.Seq).Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// TestVerifyRemovedCheckpointBetweenTwo removes one checkpoint between two:
// the next, which the chain matches, still proves every entry before it,
// so the log verifies (with one checkpoint fewer), as after a signer
// outage that one checkpoint later ended.
func TestVerifyRemovedCheckpointBetweenTwo(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			db := openTestDB(t, b.dsn(t))
			writeCadenceLog(t, db)
			if err := execSQL("DELETE FROM audit_checkpoints WHERE seq = 20")(ctx, db); err != nil {
				t.Fatal(err)
			}
			rep, err := readerAt(t, db, testTime.Add(time.Minute)).VerifyWith(ctx, testSigner(t), cadenceOptions)
			if err != nil || rep.Checkpoints != 3 || rep.Unsealed != 5 {
				t.Fatalf("VerifyWith() = %+v, %v; want OK, 3 checkpoints, an unsealed tail of 5", rep, err)
			}
		})
	}
}

// TestVerifyMirrored holds the log to the copies of its checkpoints kept
// outside the database: a rewrite of the entries before the last checkpoint,
// with that checkpoint's row deleted, passes the log alone (a tail within
// the cadence) and is found with the copies; a row deleted with its entries
// intact is reported removed.
func TestVerifyMirrored(t *testing.T) {
	cadence := VerifyOptions{CheckpointEvery: 1000, CheckpointInterval: 1000 * time.Hour}
	write := func(t *testing.T) (*bun.DB, []string) {
		db := openTestDB(t, sqliteDSN(t))
		var mirrored []string
		opts := testOptions(t)
		opts.CheckpointEvery = 1 << 30
		opts.OnCheckpoint = func(jws []string) { mirrored = append(mirrored, jws...) }
		l := openTestLog(t, db, opts)
		for _, from := range []int{1, 11} {
			appendN(t, l, from, 10)
			if _, err := l.Checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		appendN(t, l, 21, 5)
		if len(mirrored) != 2 {
			t.Fatalf("%d checkpoints mirrored, want 2", len(mirrored))
		}
		return db, mirrored
	}
	verify := func(t *testing.T, db *bun.DB, mirrored []string) (*Report, error) {
		opts := cadence
		opts.Mirrored = mirrored
		return readerAt(t, db, testTime).VerifyWith(t.Context(), testSigner(t), opts)
	}

	t.Run("intact", func(t *testing.T) {
		db, mirrored := write(t)
		if rep, err := verify(t, db, mirrored); err != nil || rep.Mirrored != 2 || rep.Checkpoints != 2 {
			t.Fatalf("%+v, %v", rep, err)
		}
		// A copy published twice (a catch-up beside a publish) counts once.
		if rep, err := verify(t, db, append(mirrored, mirrored[1])); err != nil || rep.Mirrored != 2 {
			t.Fatalf("with a second copy: %+v, %v", rep, err)
		}
	})
	t.Run("rewritten, its checkpoint deleted", func(t *testing.T) {
		ctx := t.Context()
		db, mirrored := write(t)
		if err := rewriteFrom(ctx, db, 15); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints WHERE seq = 20"); err != nil {
			t.Fatal(err)
		}
		if rep, err := verify(t, db, nil); err != nil {
			t.Fatalf("the log alone: %+v, %v; want it to pass (the gap the copies close)", rep, err)
		}
		rep, err := verify(t, db, mirrored)
		var te *TamperError
		if !errors.As(err, &te) || te.Finding != FindingChanged || te.Sequence != 11 || rep.ProblemLast != 20 {
			t.Fatalf("with the copies: %+v, %v; want entries 11 to 20 changed", rep, err)
		}
		checkNoPersonalData(t, te)
	})
	t.Run("a row deleted, its entries intact", func(t *testing.T) {
		ctx := t.Context()
		db, mirrored := write(t)
		if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints WHERE seq = 10"); err != nil {
			t.Fatal(err)
		}
		rep, err := verify(t, db, mirrored)
		var te *TamperError
		if !errors.As(err, &te) || te.Finding != FindingRemoved || te.Sequence != 10 {
			t.Fatalf("%+v, %v; want checkpoint 10 removed", rep, err)
		}
	})
	t.Run("entries past a copy removed", func(t *testing.T) {
		ctx := t.Context()
		db, mirrored := write(t)
		if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints WHERE seq = 20"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "DELETE FROM audit_entries WHERE seq > 12"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "UPDATE audit_head SET seq = 12, hash = (SELECT hash FROM audit_entries WHERE seq = 12)"); err != nil {
			t.Fatal(err)
		}
		if rep, err := verify(t, db, nil); err != nil {
			t.Fatalf("the log alone: %+v, %v; want it to pass", rep, err)
		}
		rep, err := verify(t, db, mirrored)
		var te *TamperError
		if !errors.As(err, &te) || te.Finding != FindingRemoved || te.Sequence != 13 {
			t.Fatalf("%+v, %v; want entries from 13 removed", rep, err)
		}
	})
	t.Run("a forged copy", func(t *testing.T) {
		db, mirrored := write(t)
		forged := append([]string{}, mirrored...)
		forged[0] = forged[0][:len(forged[0])-4] + "AAAA"
		if _, err := verify(t, db, forged); !errors.Is(err, ErrTampered) {
			t.Fatalf("%v; want the copy's signature refused", err)
		}
	})
}
