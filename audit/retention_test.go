package audit

import (
	"bytes"
	"errors"
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
				if i%8 == 0 {
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
