package audit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

// TestFailingStore cuts the store from under running appenders: on SQLite
// the DB is closed, on Postgres every backend of the log is terminated with
// pg_terminate_backend, repeatedly. Appenders must see errors, and every
// entry that was acknowledged must be in the store afterwards, with the
// chain intact.
func TestFailingStore(t *testing.T) {
	tests := []struct {
		name string
		dsn  func(testing.TB) string
		cut  func(t *testing.T, db *bun.DB, dsn string)
		// recovers: appends succeed again once the cut is over.
		recovers bool
	}{
		{"sqlite closed", sqliteDSN, func(t *testing.T, db *bun.DB, _ string) {
			if err := db.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}, false},
		{"postgres backends terminated", postgresDSN, func(t *testing.T, _ *bun.DB, dsn string) {
			app := dsn[strings.LastIndex(dsn, "application_name=")+len("application_name="):]
			admin := openTestDB(t, pgAdminDSN())
			for range 5 {
				if _, err := admin.ExecContext(context.Background(),
					"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?", app); err != nil {
					t.Errorf("terminate: %v", err)
				}
				time.Sleep(30 * time.Millisecond)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dsn := tt.dsn(t)
			db := openTestDB(t, dsn)
			l := openTestLog(t, db, testOptions(t))

			var mu sync.Mutex
			acked := map[int64]string{}
			var failures atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						e := decidedEntry(w*100000 + i)
						seq, err := l.Append(ctx, e)
						if err != nil {
							failures.Add(1)
							time.Sleep(2 * time.Millisecond)
							continue
						}
						mu.Lock()
						acked[seq] = e.RequestID
						mu.Unlock()
					}
				})
			}
			time.Sleep(200 * time.Millisecond)
			tt.cut(t, db, dsn)
			time.Sleep(200 * time.Millisecond)
			close(stop)
			wg.Wait()
			if tt.recovers {
				if _, err := l.Append(ctx, decidedEntry(1)); err != nil {
					t.Errorf("append after the store came back: %v", err)
				}
			}
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if failures.Load() == 0 {
				t.Fatal("no append failed while the store was cut")
			}
			reader := openTestLog(t, openTestDB(t, dsn), Options{SubjectKey: testSubjectKey})
			found := 0
			err := reader.Scan(ctx, Filter{}, func(e *Entry) error {
				if id, ok := acked[e.Sequence]; ok {
					if id != e.RequestID {
						return fmt.Errorf("entry %d holds another request", e.Sequence)
					}
					found++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if found != len(acked) || len(acked) == 0 {
				t.Fatalf("%d of %d acknowledged entries in the store", found, len(acked))
			}
			if _, err := reader.Verify(ctx, testSigner(t)); err != nil {
				t.Fatalf("verify after the cut: %v", err)
			}
			t.Logf("%d acknowledged, %d appends failed", len(acked), failures.Load())
		})
	}
}
