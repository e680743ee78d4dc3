package audit

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestForkedSingleChainWriter opens a Log as one chain (Chains 1, and 0 on
// an unforked database), appends five entries, and forks the log to two
// chains from a second Log. Concurrent appends through the first Log must
// then all fail with ErrChainsMismatch, none acknowledged: a batch that
// starts on a sequence of chain 0 also ends on one, which the check on
// audit_head lets through, and it wrote into chain 1's places. Appends
// through the second Log, at the same time, must all succeed, and the log
// must verify.
func TestForkedSingleChainWriter(t *testing.T) {
	for _, chains := range []int{1, 0} {
		t.Run(fmt.Sprintf("chains=%d", chains), func(t *testing.T) {
			ctx := t.Context()
			dsn := postgresDSN(t)
			opts := testOptions(t)
			opts.Chains = chains
			single := openTestLog(t, openTestDB(t, dsn), opts)
			appendN(t, single, 1, 5)
			opts.Chains = 2
			forked := openTestLog(t, openTestDB(t, dsn), opts)

			const appenders, perAppender = 8, 10
			var acked, failed atomic.Int64
			var wg sync.WaitGroup
			for a := range appenders {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i := range perAppender {
						seq, err := single.Append(ctx, decidedEntry(1000+a*perAppender+i))
						switch {
						case err == nil:
							acked.Add(1)
							t.Errorf("single-chain Log acknowledged entry %d after the fork", seq)
						case !errors.Is(err, ErrChainsMismatch):
							t.Errorf("single-chain Log after the fork: %v; want ErrChainsMismatch", err)
						default:
							failed.Add(1)
						}
					}
				}()
				go func() {
					defer wg.Done()
					for i := range perAppender {
						if _, err := forked.Append(ctx, decidedEntry(2000+a*perAppender+i)); err != nil {
							t.Errorf("two-chain Log: append: %v", err)
						}
					}
				}()
			}
			wg.Wait()
			if acked.Load() != 0 {
				t.Errorf("%d of %d appends acknowledged by the single-chain Log after the fork", acked.Load(), appenders*perAppender)
			}
			if _, err := single.Append(ctx, decidedEntry(3000)); !errors.Is(err, ErrChainsMismatch) ||
				!strings.Contains(err.Error(), "forked into 2 chains at entry 5") || !strings.Contains(err.Error(), "audit.chains 2") {
				t.Errorf("single-chain Log after the fork: %v; want an error naming the 2 chains", err)
			}
			if err := single.Close(ctx); err != nil {
				t.Fatalf("close single-chain Log: %v", err)
			}
			appendN(t, forked, 4000, 4)
			if err := forked.Close(ctx); err != nil {
				t.Fatalf("close two-chain Log: %v", err)
			}
			reader := openTestLog(t, openTestDB(t, dsn), Options{SubjectKey: testSubjectKey})
			rep, err := reader.Verify(ctx, testSigner(t))
			want := int64(5 + appenders*perAppender + 4)
			if err != nil || rep.Problem != nil || rep.Entries != want {
				t.Fatalf("verify: %+v, %v; want %d entries and no problem", rep, err, want)
			}
		})
	}
}
