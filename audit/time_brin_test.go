package audit

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTimeBRIN: on Postgres the time filter is served by a BRIN index, not a
// B-tree; a time query is planned on it and returns what a filter over
// every entry returns, also for entries whose times are out of sequence
// order (instances with clocks apart); and the migration goes down and up
// again, also by its concurrent path.
func TestTimeBRIN(t *testing.T) {
	defer func(n int64) { concurrentIndexAbove = n }(concurrentIndexAbove)
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	l := openTestLog(t, db, testOptions(t))
	names := postgresIndexes(t, db)
	if !slices.Contains(names, timeBRIN) || slices.Contains(names, timeBTree) {
		t.Fatalf("indexes %v: want %s and not %s", names, timeBRIN, timeBTree)
	}
	var all []*Entry
	for i := range 60 {
		e := decidedEntry(i)
		if i%7 == 3 {
			// Another instance's clock, a minute behind.
			e.Time = e.Time.Add(-time.Minute)
		}
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	from, to := testTime.Add(-30*time.Second), testTime.Add(40*time.Millisecond)
	f := Filter{From: from, To: to}
	want := func() []string {
		var ids []string
		for _, e := range all {
			if !e.Time.Before(from) && e.Time.Before(to) {
				ids = append(ids, e.RequestID)
			}
		}
		return ids
	}()
	check := func(stage string) {
		t.Helper()
		got, err := l.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range got {
			ids = append(ids, e.RequestID)
		}
		if len(want) == 0 || !slices.Equal(ids, want) {
			t.Errorf("%s: got %v, want %v", stage, ids, want)
		}
	}
	check("up")
	// The question is whether the index can answer the query, not which
	// plan 60 rows make cheapest.
	if plan := queryPlan(t, db, l, f, "enable_seqscan = off", "enable_indexscan = off"); !strings.Contains(plan, `"`+timeBRIN+`"`) {
		t.Errorf("time query not planned on %s:\n%s", timeBRIN, plan)
	}
	for _, above := range []int64{concurrentIndexAbove, 0} {
		concurrentIndexAbove = above
		if err := timeBRINDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		if names := postgresIndexes(t, db); slices.Contains(names, timeBRIN) || !slices.Contains(names, timeBTree) {
			t.Fatalf("down: indexes %v: want %s and not %s", names, timeBTree, timeBRIN)
		}
		check("down")
		if err := timeBRINUp(ctx, db); err != nil {
			t.Fatal(err)
		}
		if names := postgresIndexes(t, db); !slices.Contains(names, timeBRIN) || slices.Contains(names, timeBTree) {
			t.Fatalf("up again: indexes %v: want %s and not %s", names, timeBRIN, timeBTree)
		}
		check("up again")
	}
}

// TestTimeBRINSummarized: the time index's filled page ranges are not left
// to autovacuum: a checkpoint summarises them.
func TestTimeBRINSummarized(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	opts := testOptions(t)
	opts.CheckpointEvery = 1 << 40 // no checkpoint but the test's own
	l := openTestLog(t, db, opts)
	appendMany := func(from, n int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Go(func() {
				for i := from + w; i < from+n; i += 16 {
					if _, err := l.Append(ctx, decidedEntry(i)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// Well over one range of 128 pages.
	appendMany(0, 2500)
	n, err := l.summarizeTime(ctx)
	if err != nil || n < 1 {
		t.Fatalf("summarised %d ranges after 2,500 appends, %v; want at least 1", n, err)
	}
	appendMany(2500, 2500)
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := l.summarizeTime(ctx); err != nil || n != 0 {
		t.Fatalf("%d ranges left unsummarised by the checkpoint, %v", n, err)
	}
}
