package audit

import (
	"slices"
	"strings"
	"testing"

	"github.com/uptrace/bun"
)

// postgresIndexes returns the valid indexes of audit_entries in db's schema.
func postgresIndexes(t *testing.T, db *bun.DB) []string {
	t.Helper()
	var names []string
	if err := db.NewRaw(`SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = 'audit_entries'::regclass AND i.indisvalid ORDER BY 1`).Scan(t.Context(), &names); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestRareValueIndexes: on Postgres the decision and event indexes cover the
// rare values only; a query for a rare value is planned on them, and a
// query for any value returns what a filter over every entry returns.
func TestRareValueIndexes(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	l := openTestLog(t, db, testOptions(t))
	names := postgresIndexes(t, db)
	for _, ix := range rareIndexes {
		if !slices.Contains(names, ix.name) || slices.Contains(names, ix.replaces) {
			t.Fatalf("indexes %v: want %s and not %s", names, ix.name, ix.replaces)
		}
	}
	var all []*Entry
	for i := range 60 {
		e := decidedEntry(i)
		switch i % 6 {
		case 1:
			e.Event = EventDelivered
		case 2:
			e.Decision = "deny"
		case 3:
			e.Event, e.Decision = EventRejected, "deny"
		case 4:
			e.Event, e.Reasons = EventDeliveryFailed, []string{"delivery_failed: permanent"}
		}
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	filters := []struct {
		f    Filter
		rare string // the index a query for a rare value is planned on
		keep func(*Entry) bool
	}{
		{Filter{Decision: "deny"}, "audit_entries_decision_rare_idx", func(e *Entry) bool { return e.Decision == "deny" }},
		{Filter{Event: EventRejected}, "audit_entries_event_rare_idx", func(e *Entry) bool { return e.Event == EventRejected }},
		{Filter{Event: EventDeliveryFailed}, "audit_entries_event_rare_idx", func(e *Entry) bool { return e.Event == EventDeliveryFailed }},
		{Filter{Decision: "allow"}, "", func(e *Entry) bool { return e.Decision == "allow" }},
		{Filter{Event: EventDecided}, "", func(e *Entry) bool { return e.Event == EventDecided }},
		{Filter{Event: EventDelivered, Decision: "allow"}, "", func(e *Entry) bool { return e.Event == EventDelivered && e.Decision == "allow" }},
	}
	for _, tt := range filters {
		got, err := l.Query(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, e := range all {
			if tt.keep(e) {
				want = append(want, e.RequestID)
			}
		}
		var ids []string
		for _, e := range got {
			ids = append(ids, e.RequestID)
		}
		if len(want) == 0 || !slices.Equal(ids, want) {
			t.Errorf("%+v: got %v, want %v", tt.f, ids, want)
		}
		if tt.rare == "" {
			continue
		}
		// Seq scans off: the question is whether the narrowed index can
		// answer the query, not which plan 60 rows make cheapest.
		if plan := queryPlan(t, db, l, tt.f, "enable_seqscan = off"); !strings.Contains(plan, `"`+tt.rare+`"`) {
			t.Errorf("%+v: not planned on %s:\n%s", tt.f, tt.rare, plan)
		}
	}
}

// TestRareValueIndexesConcurrently takes the migrations' path for a large
// log (CREATE INDEX CONCURRENTLY) both ways, for the narrowed indexes (also
// from an invalid index that a failed concurrent build left behind) and the
// request index.
func TestRareValueIndexesConcurrently(t *testing.T) {
	buildIndexesConcurrently(t)
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	l := openTestLog(t, db, testOptions(t))
	appendN(t, l, 0, 20)
	if err := rareValueIndexesDown(ctx, db); err != nil {
		t.Fatal(err)
	}
	names := postgresIndexes(t, db)
	for _, ix := range rareIndexes {
		if slices.Contains(names, ix.name) || !slices.Contains(names, ix.replaces) {
			t.Fatalf("down: indexes %v: want %s and not %s", names, ix.replaces, ix.name)
		}
	}
	// A unique index on a column with duplicates fails after the
	// concurrent build created it: it stays, invalid, under the name.
	if _, err := db.ExecContext(ctx, "CREATE UNIQUE INDEX CONCURRENTLY audit_entries_event_rare_idx ON audit_entries (event)"); err == nil {
		t.Fatal("unique index over duplicate events built")
	}
	if err := rareValueIndexesUp(ctx, db); err != nil {
		t.Fatal(err)
	}
	names = postgresIndexes(t, db)
	for _, ix := range rareIndexes {
		if !slices.Contains(names, ix.name) || slices.Contains(names, ix.replaces) {
			t.Fatalf("up: indexes %v: want %s and not %s", names, ix.name, ix.replaces)
		}
	}
	var unique bool
	if err := db.NewRaw(`SELECT indisunique FROM pg_index WHERE indexrelid = 'audit_entries_event_rare_idx'::regclass`).Scan(ctx, &unique); err != nil || unique {
		t.Fatalf("event index left from the failed build: unique %v, %v", unique, err)
	}
	// The request index of migration 20261129000001 takes the same path.
	if err := outcomeIndexDown(ctx, db); err != nil {
		t.Fatal(err)
	}
	if names = postgresIndexes(t, db); !slices.Contains(names, requestIdxV1) || slices.Contains(names, requestIdxV2) {
		t.Fatalf("outcome index down: indexes %v", names)
	}
	if err := outcomeIndexUp(ctx, db); err != nil {
		t.Fatal(err)
	}
	if names = postgresIndexes(t, db); slices.Contains(names, requestIdxV1) || !slices.Contains(names, requestIdxV2) {
		t.Fatalf("outcome index up: indexes %v", names)
	}
	appendN(t, l, 20, 5)
	if _, err := l.Verify(ctx, testSigner(t)); err != nil {
		t.Fatal(err)
	}
}
