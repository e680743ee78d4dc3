package audit

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/internal/pgcut"
)

// TestArchiveCommitOutcome drops the connection of an archive as its
// COMMIT goes out, through a proxy in front of Postgres. Archive must
// report what happened: success if the COMMIT took effect, a plain error
// if it did not, and ErrArchiveOutcomeUnknown, with the manifest, if it
// cannot tell; never a plain error for entries that left the log.
func TestArchiveCommitOutcome(t *testing.T) {
	tests := []struct {
		name        string
		give        pgcut.Cut
		wantErr     error // nil, or what the error matches
		wantFailed  bool  // a plain error: nothing archived
		wantArchive bool  // the archive row is in the log afterwards
	}{
		{"commit reaches the server but its reply is lost", pgcut.Forwarded, nil, false, true},
		{"commit never reaches the server", pgcut.Dropped, nil, true, false},
		{"commit reaches the server which is then unreachable", pgcut.ForwardedThenUnreachable, ErrArchiveOutcomeUnknown, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dsn := postgresDSN(t)
			direct := openTestDB(t, dsn)
			opts := testOptions(t)
			opts.CheckpointEvery = 1 << 30
			appendN(t, openTestLog(t, direct, opts), 1, 3)
			if _, err := openTestLog(t, direct, opts).Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			l := openTestLog(t, openTestDB(t, pgcut.Start(t, dsn, tt.give)), opts)

			var buf bytes.Buffer
			m, jws, err := l.Archive(ctx, nil, testTime.Add(time.Hour), &buf)
			switch {
			case tt.wantFailed:
				if err == nil || errors.Is(err, ErrArchiveOutcomeUnknown) || m != nil {
					t.Fatalf("archive: %+v, %v; want a plain error and no manifest", m, err)
				}
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr), tt.wantErr == nil && err != nil:
				t.Fatalf("archive: %v; want %v", err, tt.wantErr)
			case m == nil || m.ToSequence != 3:
				t.Fatalf("archive: manifest %+v; want entries 1 to 3", m)
			default:
				if _, err := VerifyArchive(ctx, bytes.NewReader(buf.Bytes()), jws, testSigner(t)); err != nil {
					t.Errorf("the export and the manifest returned: %v", err)
				}
			}
			var entries, archives int
			if err := direct.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM audit_entries), (SELECT COUNT(*) FROM audit_archives)").
				Scan(&entries, &archives); err != nil {
				t.Fatal(err)
			}
			if want := map[bool][2]int{true: {0, 1}, false: {3, 0}}[tt.wantArchive]; entries != want[0] || archives != want[1] {
				t.Errorf("afterwards %d entries and %d archives in the log, want %v", entries, archives, want)
			}
		})
	}
}
