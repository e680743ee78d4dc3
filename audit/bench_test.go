package audit

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"
)

// BenchmarkAppend measures durable appends per second (each Append returns
// after its transaction committed) with 1, 8 and 64 concurrent appenders on
// SQLite and Postgres. "single-row" is the baseline measured in the same
// run: the same log as a single chain with group commit off (MaxBatch 1),
// so every entry is its own single-row insert transaction, one after
// another; "group-commit" is the configuration a deployment runs: group
// commit and DefaultChains chains (2 on Postgres, 1 on SQLite). Compare the
// entries/s metric.
func BenchmarkAppend(b *testing.B) {
	modes := []struct {
		name     string
		maxBatch int
		chains   func(*bun.DB) int
	}{
		{"single-row", 1, func(*bun.DB) int { return 1 }},
		{"group-commit", 0, func(db *bun.DB) int { return DefaultChains(db) }},
	}
	for _, be := range backends {
		for _, m := range modes {
			for _, n := range []int{1, 8, 64} {
				b.Run(fmt.Sprintf("%s/%s/appenders-%d", be.name, m.name, n), func(b *testing.B) {
					db := openTestDB(b, be.dsn(b))
					opts := testOptions(b)
					opts.MaxBatch = m.maxBatch
					opts.Chains = m.chains(db)
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

// BenchmarkSubjectQuery loads a month of one million entries into Postgres
// (straight SQL, 100,000 subjects, ten entries each) and measures a subject
// query through Query, answered from the subject index (on a hash of the
// HMAC and seq, migration 20261130000001). The
// rows carry an MD5 in place of the HMAC so that SQL can make them; the query
// path is the same.
func BenchmarkSubjectQuery(b *testing.B) {
	ctx := context.Background()
	db := openTestDB(b, postgresDSNWith(b, "read_timeout=600"))
	l := openTestLog(b, db, testOptions(b))
	if _, err := db.ExecContext(ctx, `INSERT INTO audit_entries
		SELECT g, now() - ((g % 2592000) || ' seconds')::interval, 'decided', 'r' || g, 'src', 'rcp' || (g % 50),
		'DE', 'DE', 'delivery', 'ds', 'allow', '[]', 'contract', 'a', 1, 'domestic', '[]', '{}', 'k', 'd', 'v',
		md5('cust-' || (g % 100000)), md5(g::text), md5(g::text)
		FROM generate_series(1, 1000000) g`); err != nil {
		b.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE audit_entries"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		sum := md5.Sum(fmt.Appendf(nil, "cust-%d", i%100000))
		got, err := l.Query(ctx, Filter{SubjectHMAC: hex.EncodeToString(sum[:])})
		if err != nil || len(got) != 10 {
			b.Fatalf("query: %d entries, %v", len(got), err)
		}
	}
}

// BenchmarkAppendDelivered measures durable appends with group commit in the
// broker's own flow: each request gets a decided (allow) entry and then a
// delivered entry, so that half the entries are decisions to allow, whose
// request ids the batch statement looks up for a final outcome, and half
// final outcomes, which the unique index of final outcomes checks. Each request has a
// subject of its own among 90,000, as in the load harness. Compare its
// entries/s with BenchmarkAppend's group-commit rows of the same run.
func BenchmarkAppendDelivered(b *testing.B) {
	for _, be := range backends {
		for _, n := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/appenders-%d", be.name, n), func(b *testing.B) {
				db := openTestDB(b, be.dsn(b))
				l := openTestLog(b, db, testOptions(b))
				var next atomic.Int64
				ctx := context.Background()
				b.ResetTimer()
				var wg sync.WaitGroup
				for range n {
					wg.Go(func() {
						for i := next.Add(2); i <= int64(b.N); i = next.Add(2) {
							if err := appendTransfer(ctx, l, i/2); err != nil {
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

// BenchmarkFinalOutcomes looks up the final outcomes of a batch of 1,000
// request ids (a batch POST naming its ids; half of them recorded) in a log
// of 20,000 entries: in one FinalOutcomes call, against a Query by request
// id for each, as the HTTP handler did before. Compare the two rows' ns/op
// of the same run.
func BenchmarkFinalOutcomes(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			l := openTestLog(b, openTestDB(b, be.dsn(b)), testOptions(b))
			inParallel(b, 10000, func(i int) error { return appendTransfer(ctx, l, int64(i)) })
			ids := make([]string, 1000)
			for i := range ids {
				ids[i] = fmt.Sprintf("ord-%d-delivery", i*10)
				if i%2 == 1 {
					ids[i] = fmt.Sprintf("ord-new-%d", i) // not recorded
				}
			}
			b.Run("one-call", func(b *testing.B) {
				for b.Loop() {
					if _, err := l.FinalOutcomes(ctx, ids); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("query-per-id", func(b *testing.B) {
				for b.Loop() {
					for _, id := range ids {
						if _, err := l.Query(ctx, Filter{RequestID: id}); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		})
	}
}

// appendTransfer appends a delivered transfer's two entries for request
// "ord-<req>-delivery": its decision to allow, then its delivery (the log
// refuses a decision to allow after the request's final outcome), with a
// subject of its own among 90,000, in no order, as in the load harness.
func appendTransfer(ctx context.Context, l *Log, req int64) error {
	for _, ev := range []Event{EventDecided, EventDelivered} {
		e := decidedEntry(0)
		e.Event = ev
		e.RequestID = fmt.Sprintf("ord-%d-delivery", req)
		e.SubjectID = fmt.Sprintf("cust-%d", req*2654435761%90000)
		if _, err := l.Append(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkVerify measures Verify over 20,000 entries on SQLite and
// Postgres against the baseline of reading the same entries in sequence
// order without checking them (Scan). Compare the entries/s metric: their
// ratio is what the hashing, the links and the checkpoints cost.
func BenchmarkVerify(b *testing.B) {
	const n = 20_000
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			l := openTestLog(b, openTestDB(b, be.dsn(b)), testOptions(b))
			inParallel(b, n, func(i int) error { _, err := l.Append(ctx, decidedEntry(i)); return err })
			if _, err := l.Checkpoint(ctx); err != nil {
				b.Fatal(err)
			}
			b.Run("baseline=scan", func(b *testing.B) {
				for b.Loop() {
					seen := 0
					if err := l.Scan(ctx, Filter{}, func(*Entry) error { seen++; return nil }); err != nil || seen != n {
						b.Fatal(err, seen)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
			})
			b.Run("verify", func(b *testing.B) {
				for b.Loop() {
					if rep, err := l.Verify(ctx, testSigner(b)); err != nil || rep.Entries != n {
						b.Fatal(err, rep)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
			})
		})
	}
}

// inParallel calls fn for 0 to n-1 from 50 goroutines, as concurrent
// transfers append, and fails b on the first error of each.
func inParallel(b *testing.B, n int, fn func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := w; i < n; i += 50 {
				if err := fn(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
