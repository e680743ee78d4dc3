package audit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkAppend measures durable appends per second (each Append returns
// after its transaction committed) with 1, 8 and 64 concurrent appenders on
// SQLite and Postgres. "single-row" is the baseline measured in the same
// run: the same log with group commit off (MaxBatch 1), so every entry is
// its own single-row insert transaction; "group-commit" is the default.
// Compare the entries/s metric.
func BenchmarkAppend(b *testing.B) {
	modes := []struct {
		name     string
		maxBatch int
	}{
		{"single-row", 1},
		{"group-commit", 0},
	}
	for _, be := range backends {
		for _, m := range modes {
			for _, n := range []int{1, 8, 64} {
				b.Run(fmt.Sprintf("%s/%s/appenders-%d", be.name, m.name, n), func(b *testing.B) {
					db := openTestDB(b, be.dsn(b))
					opts := testOptions(b)
					opts.MaxBatch = m.maxBatch
					l := openTestLog(b, db, opts)
					entries := make([]*Entry, 64)
					for i := range entries {
						entries[i] = decidedEntry(i)
					}
					var next atomic.Int64
					ctx := context.Background()
					b.ResetTimer()
					var wg sync.WaitGroup
					for w := range n {
						wg.Go(func() {
							for next.Add(1) <= int64(b.N) {
								if _, err := l.Append(ctx, entries[w]); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
					b.StopTimer()
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
				})
			}
		}
	}
}
