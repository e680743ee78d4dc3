package audit

import (
	"context"
	"testing"
	"time"
)

// TestCheckpointTriggers checks that checkpoints are signed by count and by
// time while the log runs (not only on Close).
func TestCheckpointTriggers(t *testing.T) {
	tests := []struct {
		name     string
		every    int64
		interval time.Duration
		appends  int
		want     int
	}{
		{"every 10 entries", 10, time.Hour, 25, 2},
		{"every 50ms", 1 << 30, 50 * time.Millisecond, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			opts := testOptions(t)
			opts.CheckpointEvery, opts.CheckpointInterval = tt.every, tt.interval
			l := openTestLog(t, openTestDB(t, sqliteDSN(t)), opts)
			appendN(t, l, 1, tt.appends)
			deadline := time.Now().Add(10 * time.Second)
			for {
				rep, err := l.Verify(ctx, testSigner(t))
				if err != nil {
					t.Fatal(err)
				}
				if rep.Checkpoints >= tt.want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d checkpoints after 10s, want %d", rep.Checkpoints, tt.want)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := l.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			rep, err := l.Verify(ctx, testSigner(t))
			if err != nil || rep.Unsealed != 0 {
				t.Errorf("after Close: %+v, %v; want every entry sealed", rep, err)
			}
		})
	}
}
