package audit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOnCommit: OnCommit hears of every committed entry, in batches, each
// with the time its transaction took, on
// both stores and on either PostgreSQL insert path (the first batch takes
// the head lock, later ones the prepared compare-and-set).
func TestOnCommit(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			db := openTestDB(t, be.dsn(t))
			var entries, batches, zero atomic.Int64
			opts := testOptions(t)
			opts.OnCommit = func(n int, took time.Duration) {
				entries.Add(int64(n))
				batches.Add(1)
				if took <= 0 {
					zero.Add(1)
				}
			}
			l := openTestLog(t, db, opts)
			var wg sync.WaitGroup
			for i := range 40 {
				wg.Go(func() {
					if _, err := l.Append(context.Background(), decidedEntry(i)); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			// The writer answers the appenders before it calls OnCommit:
			// the last batch is heard of a moment after its appends return.
			for deadline := time.Now().Add(5 * time.Second); entries.Load() < 40 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if got := entries.Load(); got != 40 {
				t.Errorf("OnCommit heard of %d entries in %d batches, want 40", got, batches.Load())
			}
			if b := batches.Load(); b < 1 || b > 40 {
				t.Errorf("%d batches for 40 entries", b)
			}
			if z := zero.Load(); z > 0 {
				t.Errorf("%d of %d batches committed in no time", z, batches.Load())
			}
		})
	}
}
