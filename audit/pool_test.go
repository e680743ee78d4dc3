package audit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestAppendReusesPending appends from many goroutines, some of which give
// up on their entries (a context that ends while the entry waits) and change
// the entry they gave right away, while the pendings of the others are
// reused. Every entry acknowledged must be stored at its sequence with its
// own content, and the chain must verify.
func TestAppendReusesPending(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			opts := testOptions(t)
			opts.GatherWindow = 2 * time.Millisecond
			l := openTestLog(t, openTestDB(t, b.dsn(t)), opts)
			var mu sync.Mutex
			acked := map[int64]Entry{}
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(w), 1))
					for i := range 60 {
						e := decidedEntry(w*1000 + i)
						e.Reasons = []string{fmt.Sprintf("reason-%d-%d", w, i)}
						e.FieldsRemoved = map[string]string{fmt.Sprintf("f%d", i): fmt.Sprintf("w%d", w)}
						want := e.clone()
						want.SubjectHMAC = SubjectHMAC(testSubjectKey, e.SubjectID)
						want.SubjectID = ""
						actx, cancel := context.WithCancel(ctx)
						if r.IntN(4) == 0 {
							d := time.Duration(r.IntN(1500)) * time.Microsecond
							go func() {
								time.Sleep(d)
								cancel()
							}()
						}
						seq, err := l.Append(actx, e)
						cancel()
						// The caller owns e again: scribble over it.
						e.Reasons[0], e.FieldsRemoved["x"], e.Recipient = "changed", "changed", "changed"
						if err != nil {
							continue
						}
						want.Sequence = seq
						mu.Lock()
						acked[seq] = want
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(acked) == 0 {
				t.Fatal("no entry acknowledged")
			}
			// An append whose context ended first returned at once, but its
			// entry may still be in a batch: Close commits what is queued,
			// so that the query below sees every entry Verify will.
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := l.Query(ctx, Filter{Limit: 100000})
			if err != nil {
				t.Fatal(err)
			}
			stored := map[int64]Entry{}
			for _, g := range got {
				stored[g.Sequence] = g
			}
			for seq, w := range acked {
				g, ok := stored[seq]
				w.PrevHash, w.Hash = g.PrevHash, g.Hash
				if !ok || !entriesEqual(g, w) {
					t.Fatalf("entry %d stored as\n%+v\nwant\n%+v", seq, g, w)
				}
				for k, v := range w.FieldsRemoved {
					if g.FieldsRemoved[k] != v {
						t.Fatalf("entry %d fields removed %v, want %v", seq, g.FieldsRemoved, w.FieldsRemoved)
					}
				}
			}
			if rep, err := l.Verify(ctx, testSigner(t)); err != nil || rep.Entries != int64(len(got)) {
				t.Fatalf("verify: %+v, %v; the query found %d entries", rep, err, len(got))
			}
		})
	}
}
