package audit

import (
	"slices"
	"testing"
)

// wantIndexes fails t unless db's log has every index of have and none of
// lack.
func wantIndexes(t *testing.T, names, have, lack []string, when string) {
	t.Helper()
	for _, n := range have {
		if !slices.Contains(names, n) {
			t.Fatalf("%s: indexes %v: want %s", when, names, n)
		}
	}
	for _, n := range lack {
		if slices.Contains(names, n) {
			t.Fatalf("%s: indexes %v: want no %s", when, names, n)
		}
	}
}

// TestNarrowKeys: on Postgres the subject index keys a hash of the HMAC and
// the request id index is (request_id, seq); a subject query finds exactly
// the subject's entries, and one for a subject with none finds none; the
// migration goes down and up again, on the small and on the concurrent
// path, and leaves the wide request index to a log without the unique index
// of final outcomes.
func TestNarrowKeys(t *testing.T) {
	onBothIndexPaths(t, func(t *testing.T) {
		ctx := t.Context()
		db := openTestDB(t, postgresDSN(t))
		l := openTestLog(t, db, testOptions(t))
		narrow := []string{subjectKeyIdx, requestIdxV1}
		wide := []string{subjectIdxV1, requestIdxV2}
		// The last migration (20261130000002) folds the request index
		// and that of final outcomes into one; down, they are back.
		wantIndexes(t, postgresIndexes(t, db), []string{subjectKeyIdx, requestFinalIdx},
			append([]string{requestIdxV1, finalIdx}, wide...), "open")
		appendN(t, l, 0, 42)

		// Each subject (cust-0 to cust-6) has every seventh entry.
		check := func(when string) {
			t.Helper()
			for s := range 8 {
				subject := SubjectHMAC(testSubjectKey, "cust-"+string(rune('0'+s)))
				got, err := l.Query(ctx, Filter{SubjectHMAC: subject, Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				want := 6
				if s == 7 {
					want = 0 // no entry has cust-7
				}
				if len(got) != want {
					t.Fatalf("%s: subject cust-%d: %d entries, want %d", when, s, len(got), want)
				}
				for _, e := range got {
					if e.SubjectHMAC != subject || e.Sequence%7 != int64(s+1)%7 {
						t.Fatalf("%s: subject cust-%d: entry %d of %s", when, s, e.Sequence, e.SubjectHMAC)
					}
				}
			}
			got, err := l.Query(ctx, Filter{RequestID: "ord-10005-delivery"})
			if err != nil || len(got) != 1 || got[0].Sequence != 6 {
				t.Fatalf("%s: request query: %v, %v", when, got, err)
			}
		}
		check("open")
		if err := requestFinalIndexDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), append([]string{finalIdx}, narrow...),
			append([]string{requestFinalIdx}, wide...), "request index down")
		check("request index down")

		if err := narrowKeysDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), wide, narrow, "down")
		check("down")
		if err := narrowKeysUp(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), narrow, wide, "up")
		check("up")

		// Without the unique index of final outcomes the writer looks
		// outcomes up in every batch, on the wide request index.
		if err := narrowKeysDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		if err := finalUniqueDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		if err := narrowKeysUp(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), []string{subjectKeyIdx, requestIdxV2}, []string{subjectIdxV1, requestIdxV1}, "up without final index")
		if err := narrowKeysDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), wide, narrow, "down without final index")
		check("down without final index")
		if _, err := l.Verify(ctx, testSigner(t)); err != nil {
			t.Fatal(err)
		}
	})
}
