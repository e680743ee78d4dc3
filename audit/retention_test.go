package audit

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// TestRetention archives the entries older than a horizon and checks that
// the archive verifies on its own, that the remaining log still verifies from
// the anchor, that appends continue, and that a tampered archive or anchor is
// found.
func TestRetention(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			db := openTestDB(t, b.dsn(t))
			opts := testOptions(t)
			opts.CheckpointEvery = 1 << 30
			l := openTestLog(t, db, opts)
			old, recent := testTime.Add(-48*time.Hour), testTime
			for i := 1; i <= 30; i++ {
				e := decidedEntry(i)
				e.Time = old
				if i > 20 {
					e.Time = recent
				}
				if _, err := l.Append(ctx, e); err != nil {
					t.Fatal(err)
				}
				if i%10 == 0 {
					if _, err := l.Checkpoint(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			var buf bytes.Buffer
			m, jws, err := l.Archive(ctx, nil, testTime.Add(-24*time.Hour), &buf)
			if err != nil {
				t.Fatalf("archive: %v", err)
			}
			if m.FromSequence != 1 || m.ToSequence != 20 || m.Entries != 20 || len(m.Checkpoints) != 2 {
				t.Errorf("manifest = %+v", m)
			}
			archived := bytes.Clone(buf.Bytes())
			if _, err := VerifyArchive(ctx, bytes.NewReader(archived), jws, testSigner(t)); err != nil {
				t.Errorf("verify archive: %v", err)
			}
			rest, err := l.Query(ctx, Filter{Limit: 100})
			if err != nil || len(rest) != 10 || rest[0].Sequence != 21 {
				t.Fatalf("after archiving: %d entries, %v", len(rest), err)
			}
			appendN(t, l, 31, 5)
			rep, err := l.Verify(ctx, testSigner(t))
			if err != nil || rep.Anchor != 20 || rep.Entries != 15 || rep.FirstSequence != 21 {
				t.Fatalf("verify after archiving: %+v, %v", rep, err)
			}
			if m, _, err := l.Archive(ctx, nil, testTime.Add(-24*time.Hour), &buf); m != nil || err != nil {
				t.Errorf("second archive of the same horizon: %+v, %v", m, err)
			}

			tampered := bytes.Replace(archived, []byte("swiftship-de"), []byte("swiftship-xx"), 1)
			if _, err := VerifyArchive(ctx, bytes.NewReader(tampered), jws, testSigner(t)); !errors.Is(err, ErrTampered) {
				t.Errorf("tampered archive: %v", err)
			}
			if _, err := VerifyArchive(ctx, bytes.NewReader(archived[:len(archived)/2]), jws, testSigner(t)); err == nil {
				t.Error("truncated archive verified")
			}
			if _, err := db.ExecContext(ctx, "UPDATE audit_archives SET anchor_hash = 'forged'"); err != nil {
				t.Fatal(err)
			}
			var te *TamperError
			if _, err := l.Verify(ctx, testSigner(t)); !errors.As(err, &te) || te.Finding != FindingBadCheckpoint {
				t.Errorf("forged anchor: %v", err)
			}
		})
	}
}

// TestArchiveStopsAtLastCheckpoint archives no entry that a checkpoint
// does not seal: the manifest would vouch for entries only the chain
// vouches for, which whoever can write the table may have rewritten.
func TestArchiveStopsAtLastCheckpoint(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			opts := testOptions(t)
			opts.CheckpointEvery = 1 << 30
			l := openTestLog(t, openTestDB(t, b.dsn(t)), opts)
			horizon := testTime.Add(time.Hour) // every entry is older
			if m, _, err := l.Archive(ctx, nil, horizon, io.Discard); m != nil || err != nil {
				t.Fatalf("empty log: %+v, %v", m, err)
			}
			appendN(t, l, 1, 4)
			if m, _, err := l.Archive(ctx, nil, horizon, io.Discard); m != nil || err != nil {
				t.Fatalf("no checkpoint yet: %+v, %v; want nothing archived", m, err)
			}
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 5, 6)
			m, _, err := l.Archive(ctx, nil, horizon, io.Discard)
			if err != nil || m == nil || m.FromSequence != 1 || m.ToSequence != 4 || len(m.Checkpoints) != 1 {
				t.Fatalf("archive: %+v, %v; want entries 1 to 4, sealed at 4", m, err)
			}
			if m, _, err := l.Archive(ctx, nil, horizon, io.Discard); m != nil || err != nil {
				t.Fatalf("unsealed tail: %+v, %v; want nothing archived", m, err)
			}
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if m, _, err = l.Archive(ctx, nil, horizon, io.Discard); err != nil || m == nil || m.FromSequence != 5 || m.ToSequence != 10 {
				t.Fatalf("archive after the next checkpoint: %+v, %v; want entries 5 to 10", m, err)
			}
			if rep, err := l.Verify(ctx, testSigner(t)); err != nil || rep.Anchor != 10 {
				t.Fatalf("verify: %+v, %v", rep, err)
			}
		})
	}
}

// TestSealedThrough checks the bound of what checkpoints seal on one chain
// and on a log forked into three chains at 6, where a checkpoint seals its
// own chain (7, 10, 13, … is chain 1) and everything up to the fork.
func TestSealedThrough(t *testing.T) {
	cps := func(seqs ...int64) []checkpointRow {
		var out []checkpointRow
		for _, s := range seqs {
			out = append(out, checkpointRow{Seq: s})
		}
		return out
	}
	forked := layout{k: 3, fork: 6}
	tests := []struct {
		name string
		ly   layout
		cps  []checkpointRow
		to   int64
		want int64
	}{
		{"none", singleChain, nil, 20, 0},
		{"one chain", singleChain, cps(5, 12), 20, 12},
		{"one chain, sealed past to", singleChain, cps(5, 20), 20, 20},
		{"forked, none", forked, nil, 20, 0},
		{"forked, before the fork only", forked, cps(4), 20, 4},
		{"forked, one chain sealed", forked, cps(4, 10), 20, 6},
		{"forked, every chain sealed", forked, cps(16, 17, 18), 20, 16},
		{"forked, every chain sealed, one behind", forked, cps(8, 16, 18), 20, 8},
	}
	for _, tt := range tests {
		if got := sealedThrough(tt.ly, tt.cps, tt.to); got != tt.want {
			t.Errorf("%s: sealedThrough = %d, want %d", tt.name, got, tt.want)
		}
	}
}
