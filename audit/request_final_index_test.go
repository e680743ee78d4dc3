package audit

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRequestFinalIndex: on Postgres one unique index on request ids keeps a
// request to one final outcome and answers queries by request id, on the
// small and on the concurrent migration path; down, the two indexes it
// replaced are back and do the same; up again, it is back.
func TestRequestFinalIndex(t *testing.T) {
	onBothIndexPaths(t, func(t *testing.T) {
		ctx := t.Context()
		db := openTestDB(t, postgresDSN(t))
		l := openTestLog(t, db, testOptions(t))
		wantIndexes(t, postgresIndexes(t, db), []string{requestFinalIdx}, []string{finalIdx, requestIdxV1, requestIdxV2}, "open")
		if ix, err := lookUpIndex(ctx, db, requestFinalIdx); err != nil || !ix.valid || !ix.unique {
			t.Fatalf("%s: %+v, %v", requestFinalIdx, ix, err)
		}
		i := 0
		appendOK := func(id string, ev Event, decision string, reasons ...string) int64 {
			t.Helper()
			i++
			seq, err := l.Append(ctx, outcomeEntry(i, id, ev, decision, reasons...))
			if err != nil {
				t.Fatalf("append %s %s: %v", id, ev, err)
			}
			return seq
		}
		// Entries that are not final outcomes share a request id freely.
		first := appendOK("r-1", EventDecided, "allow")
		appendOK("r-1", EventDeliveryFailed, "allow", "delivery_failed: transient")
		appendOK("r-1", EventDeliveryFailed, "allow", "delivery_failed: transient")
		delivered := appendOK("r-1", EventDelivered, "allow")
		appendOK("r-2", EventDecided, "deny")
		appendOK("", EventRegistryApplied, "")
		appendOK("", EventRegistryApplied, "")

		refused := func(when string, id string, ev Event, decision string, at int64) {
			t.Helper()
			i++
			_, err := l.Append(ctx, outcomeEntry(i, id, ev, decision))
			var dup *DuplicateOutcomeError
			if !errors.As(err, &dup) || dup.Sequence != at {
				t.Fatalf("%s: a second final outcome of %s: %v; want a duplicate of %d", when, id, err, at)
			}
		}
		query := func(when string) {
			t.Helper()
			got, err := l.Query(ctx, Filter{RequestID: "r-1"})
			if err != nil || len(got) != 4 || got[0].Sequence != first || got[3].Sequence != delivered {
				t.Fatalf("%s: query by request id: %d entries, %v", when, len(got), err)
			}
			for k := 1; k < len(got); k++ {
				if got[k].Sequence <= got[k-1].Sequence {
					t.Fatalf("%s: query by request id out of sequence order", when)
				}
			}
		}
		refused("open", "r-1", EventDelivered, "allow", delivered)
		refused("open", "r-2", EventRejected, "deny", delivered+1)
		query("open")
		if _, err := l.Verify(ctx, testSigner(t)); err != nil {
			t.Fatal(err)
		}

		if err := requestFinalIndexDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), []string{finalIdx, requestIdxV1}, []string{requestFinalIdx}, "down")
		l2 := openTestLog(t, db, testOptions(t))
		l, l2 = l2, l
		if err := l2.Close(ctx); err != nil {
			t.Fatal(err)
		}
		refused("down", "r-1", EventDelivered, "allow", delivered)
		query("down")
		if ok, err := finalsIndexed(ctx, db); err != nil || !ok {
			t.Fatalf("down: finals indexed %v, %v", ok, err)
		}

		if err := requestFinalIndexUp(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), []string{requestFinalIdx}, []string{finalIdx, requestIdxV1}, "up")
		refused("up", "r-1", EventDelivered, "allow", delivered)
		query("up")
		if ok, err := finalsIndexed(ctx, db); err != nil || !ok {
			t.Fatalf("up: finals indexed %v, %v", ok, err)
		}
	})
}

// TestRequestQueryUsesIndex loads 50,000 rows into Postgres (straight SQL,
// two entries per request id) and asserts that a query by request id is
// planned on the request index, with the server's statistics and without
// them (a log that is new or grew since autovacuum last looked).
func TestRequestQueryUsesIndex(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	l := openTestLog(t, db, testOptions(t))
	if _, err := db.ExecContext(ctx, `INSERT INTO audit_entries
		SELECT g, now(), CASE WHEN g % 2 = 0 THEN 'delivered' ELSE 'decided' END, 'r' || (g / 2), 'src', 'rcp',
		'DE', 'DE', 'delivery', 'ds', 'allow', '[]', 'contract', 'a', 1, 'domestic', '[]', '{}', 'k', 'd', 'v',
		md5((g % 20000)::text), md5(g::text), md5(g::text) FROM generate_series(1, 50000) g`); err != nil {
		t.Fatal(err)
	}
	for _, analyze := range []bool{false, true} {
		if analyze {
			if _, err := db.ExecContext(ctx, "ANALYZE audit_entries"); err != nil {
				t.Fatal(err)
			}
		}
		p := queryPlan(t, db, l, Filter{RequestID: "r4321"})
		if strings.Contains(p, `"Seq Scan"`) || !strings.Contains(p, `"`+requestFinalIdx+`"`) {
			t.Errorf("analyzed %v: request query not planned on %s:\n%s", analyze, requestFinalIdx, p)
		}
		got, err := l.Query(ctx, Filter{RequestID: "r4321"})
		if err != nil || len(got) != 2 || got[0].Sequence != 8642 || got[1].Sequence != 8643 {
			t.Fatalf("analyzed %v: query by request id: %d entries, %v", analyze, len(got), err)
		}
	}
}

// TestRequestFinalIndexUnderAppends takes the migration's concurrent path
// on a log that appenders keep writing to, as an upgrade of a large log
// with instances running does: no append fails or waits for the build to
// end, and afterwards the index is valid and refuses a second final outcome.
func TestRequestFinalIndexUnderAppends(t *testing.T) {
	buildIndexesConcurrently(t)
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	l := openTestLog(t, db, testOptions(t))
	if err := requestFinalIndexDown(ctx, db); err != nil {
		t.Fatal(err)
	}
	var (
		next     atomic.Int64
		appended atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := int(next.Add(1))
				id := fmt.Sprintf("r-%d", i)
				for _, ev := range []Event{EventDecided, EventDelivered} {
					if _, err := l.Append(ctx, outcomeEntry(i, id, ev, "allow")); err != nil {
						t.Errorf("append %s %s during the build: %v", id, ev, err)
						return
					}
					appended.Add(1)
				}
			}
		})
	}
	// Let the appenders get going, then build.
	for appended.Load() < 200 {
		time.Sleep(5 * time.Millisecond)
	}
	before := appended.Load()
	err := requestFinalIndexUp(ctx, db)
	during := appended.Load() - before
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if during == 0 {
		t.Error("no entry was appended while the index was built")
	}
	wantIndexes(t, postgresIndexes(t, db), []string{requestFinalIdx}, []string{finalIdx, requestIdxV1}, "after the build")
	if ix, err := lookUpIndex(ctx, db, requestFinalIdx); err != nil || !ix.valid || !ix.unique {
		t.Fatalf("%s: %+v, %v", requestFinalIdx, ix, err)
	}
	_, err = l.Append(ctx, outcomeEntry(0, "r-1", EventDelivered, "allow"))
	var dup *DuplicateOutcomeError
	if !errors.As(err, &dup) {
		t.Fatalf("a second delivery of r-1 after the build: %v", err)
	}
	if _, err := l.Verify(ctx, testSigner(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries appended, %d during the build", appended.Load(), during)
}
