package audit

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/uptrace/bun"
)

// TestFinalIndexAgreesWithFinal stores one entry of every event, decision
// and kind of reasons, each under its own request id, and checks that the
// condition of the unique index of final outcomes (pgFinal) holds for
// exactly the ones Final calls final, as the index was built.
func TestFinalIndexAgreesWithFinal(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	l := openTestLog(t, db, testOptions(t))
	events := []Event{EventDecided, EventDelivered, EventDeliveryFailed, EventRejected, EventReceived,
		EventErasureNotified, EventRegistryApplied, EventConsentRecorded, EventErasureRecorded}
	reasons := [][]string{
		nil,
		{"delivery_failed: transient"},
		{"delivery_failed: permanent"},
		{"delivery_failed: max_deliver_reached"},
		{"first", "then transient"},
		{"transient first", "then not"},
		{"transient\n"},
		{"not\ntransient"},
		{`quoted "transient"`},
		{`quoted "transient`},
		{"\\transient"},
		{"transient "},
		{"Transient"},
		{"\u2028transient"},
	}
	want := map[string]bool{}
	i := 0
	for _, ev := range events {
		for _, decision := range []string{"allow", "deny"} {
			for _, rs := range reasons {
				i++
				e := outcomeEntry(i, fmt.Sprintf("r-%d", i), ev, decision, rs...)
				if _, err := l.Append(ctx, e); err != nil {
					t.Fatalf("%s %s %q: %v", ev, decision, rs, err)
				}
				want[e.RequestID] = e.Final()
			}
		}
	}
	// An entry without a request id is never final.
	e := outcomeEntry(i+1, "", EventRejected, "deny")
	if _, err := l.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	// The condition as the server keeps it with each index, not only as
	// written here: the request index's key is 0 for a final outcome
	// (20261130000002), and down, the index of final outcomes holds them
	// (20261129000005).
	var key string
	if err := db.NewRaw("SELECT pg_get_expr(indexprs, indrelid) FROM pg_index WHERE indexrelid = ?::regclass AND indisunique",
		requestFinalIdx).Scan(ctx, &key); err != nil {
		t.Fatal(err)
	}
	got := finalIDs(t, db, "("+key+") = 0", want)
	if err := requestFinalIndexDown(ctx, db); err != nil {
		t.Fatal(err)
	}
	var pred string
	if err := db.NewRaw("SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = ?::regclass AND indisunique",
		finalIdx).Scan(ctx, &pred); err != nil {
		t.Fatal(err)
	}
	if down := finalIDs(t, db, pred, want); !slices.Equal(down, got) {
		t.Errorf("final outcomes by the index of final outcomes %v, by the request index %v", down, got)
	}
	if len(got) == 0 || len(got) == len(want) {
		t.Fatalf("%d of %d entries final: the test covers nothing", len(got), len(want))
	}
}

// finalIDs returns the request ids of the entries for which cond holds,
// sorted, and fails t for each whose Final (want) disagrees.
func finalIDs(t *testing.T, db bun.IDB, cond string, want map[string]bool) []string {
	t.Helper()
	var got []string
	if err := db.NewRaw("SELECT request_id FROM audit_entries WHERE "+cond+" ORDER BY request_id").Scan(t.Context(), &got); err != nil {
		t.Fatalf("%s: %v", cond, err)
	}
	for id, final := range want {
		if slices.Contains(got, id) != final {
			t.Errorf("%s: in the index %v, Final %v", id, !final, final)
		}
	}
	return got
}

// TestFinalIndexLeftOutOverDuplicates: a log whose store holds two final
// outcomes of one request (written past Append) cannot have the unique
// index; the migration leaves it out, on a small log and on a large one
// (concurrent build), and a writer opened on it looks the outcomes up and
// still refuses a third.
func TestFinalIndexLeftOutOverDuplicates(t *testing.T) {
	onBothIndexPaths(t, func(t *testing.T) {
		ctx := t.Context()
		db := openTestDB(t, postgresDSN(t))
		l := openTestLog(t, db, testOptions(t))
		if seq, err := l.Append(ctx, outcomeEntry(1, "r-twice", EventDelivered, "allow")); err != nil || seq != 1 {
			t.Fatalf("append: %d, %v", seq, err)
		}
		if err := requestFinalIndexDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		if err := finalUniqueDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO audit_entries ("+entryColumns+") SELECT 100, "+
			entryColumns[len("seq, "):]+" FROM audit_entries WHERE seq = 1"); err != nil {
			t.Fatal(err)
		}
		if err := finalUniqueUp(ctx, db); err != nil {
			t.Fatalf("migration over a duplicate: %v", err)
		}
		if err := requestFinalIndexUp(ctx, db); err != nil {
			t.Fatalf("request index migration over a duplicate: %v", err)
		}
		wantIndexes(t, postgresIndexes(t, db), []string{requestIdxV1}, []string{finalIdx, requestFinalIdx}, "over a duplicate")
		l2 := openTestLog(t, db, testOptions(t))
		_, err := l2.Append(ctx, outcomeEntry(2, "r-twice", EventDelivered, "allow"))
		var dup *DuplicateOutcomeError
		if !errors.As(err, &dup) || dup.Sequence != 1 {
			t.Fatalf("third delivery: %v; want a duplicate of 1", err)
		}
		if l2.lanes[0].conn == nil || l2.lanes[0].finalsIndexed {
			t.Fatal("the writer takes the index for there")
		}
		// Without the duplicate, the migration builds it.
		if _, err := db.ExecContext(ctx, "DELETE FROM audit_entries WHERE seq = 100"); err != nil {
			t.Fatal(err)
		}
		if err := finalUniqueUp(ctx, db); err != nil {
			t.Fatal(err)
		}
		if ok, err := finalsIndexed(ctx, db); err != nil || !ok {
			t.Fatalf("index after the duplicate is gone: %v, %v", ok, err)
		}
		if err := requestFinalIndexUp(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), []string{requestFinalIdx}, []string{finalIdx, requestIdxV1}, "after the duplicate is gone")
		if ok, err := finalsIndexed(ctx, db); err != nil || !ok {
			t.Fatalf("request index after the duplicate is gone: %v, %v", ok, err)
		}
	})
}
