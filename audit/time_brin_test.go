package audit

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"
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
	q, err := l.apply(db.NewSelect().Model((*entryRow)(nil)), &f)
	if err != nil {
		t.Fatal(err)
	}
	err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// The question is whether the index can answer the query, not
		// which plan 60 rows make cheapest.
		for _, off := range []string{"enable_seqscan", "enable_indexscan"} {
			if _, err := tx.ExecContext(ctx, "SET LOCAL "+off+" = off"); err != nil {
				return err
			}
		}
		var plan string
		if err := tx.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+q.Limit(DefaultLimit).String()).Scan(&plan); err != nil {
			return err
		}
		if !strings.Contains(plan, `"`+timeBRIN+`"`) {
			t.Errorf("time query not planned on %s:\n%s", timeBRIN, plan)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
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
