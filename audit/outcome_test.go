package audit

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun/dialect/pgdialect"
)

func TestEntryFinal(t *testing.T) {
	tests := []struct {
		name string
		give Entry
		want bool
	}{
		{"delivered", Entry{Event: EventDelivered, RequestID: "r"}, true},
		{"rejected", Entry{Event: EventRejected, RequestID: "r"}, true},
		{"decided deny", Entry{Event: EventDecided, RequestID: "r", Decision: "deny"}, true},
		{"decided allow", Entry{Event: EventDecided, RequestID: "r", Decision: "allow"}, false},
		{"delivery failed permanent", Entry{Event: EventDeliveryFailed, RequestID: "r", Reasons: []string{"delivery_failed: permanent"}}, true},
		{"delivery failed exhausted", Entry{Event: EventDeliveryFailed, RequestID: "r", Reasons: []string{"delivery_failed: max_deliver_reached"}}, true},
		{"delivery failed transient", Entry{Event: EventDeliveryFailed, RequestID: "r", Reasons: []string{"delivery_failed: transient"}}, false},
		{"received", Entry{Event: EventReceived, RequestID: "r"}, false},
		{"erasure notified", Entry{Event: EventErasureNotified, RequestID: "r"}, false},
		{"no request id", Entry{Event: EventRejected}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.Final(); got != tt.want {
				t.Errorf("Final() = %v, want %v", got, tt.want)
			}
		})
	}
}

// outcomeEntry is entry i turned into event ev of request id.
func outcomeEntry(i int, id string, ev Event, decision string, reasons ...string) *Entry {
	e := decidedEntry(i)
	e.RequestID, e.Event, e.Decision, e.Reasons = id, ev, decision, append([]string{}, reasons...)
	return e
}

// TestDuplicateOutcomeRace races appenders on two logs over two *bun.DB
// handles (two broker instances) to record `delivered` for the same request
// ids, each after its decision to allow: exactly one delivered wins per id,
// the losers get ErrDuplicateOutcome naming the winner's sequence (on their
// delivered entry, or on their decision if the delivery was recorded
// before it), and the chain verifies. Run with -race.
func TestDuplicateOutcomeRace(t *testing.T) {
	const ids, racers = 40, 6
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			dsn := b.dsn(t)
			opts := testOptions(t)
			opts.CheckpointEvery = 20
			logs := []*Log{openTestLog(t, openTestDB(t, dsn), opts), openTestLog(t, openTestDB(t, dsn), opts)}
			var mu sync.Mutex
			won := map[string][]int64{}
			lost := map[string][]int64{}
			decided := 0
			var wg sync.WaitGroup
			for r := range racers {
				wg.Go(func() {
					l := logs[r%len(logs)]
					for i := range ids {
						id := fmt.Sprintf("ord-race-%d", i)
						var dup *DuplicateOutcomeError
						_, err := l.Append(ctx, outcomeEntry(i, id, EventDecided, "allow"))
						if errors.As(err, &dup) {
							// The delivery was recorded first: no
							// decision to allow is taken after it.
							mu.Lock()
							lost[id] = append(lost[id], dup.Sequence)
							mu.Unlock()
							continue
						}
						if err != nil {
							t.Errorf("append decided: %v", err)
							return
						}
						seq, err := l.Append(ctx, outcomeEntry(i, id, EventDelivered, "allow"))
						mu.Lock()
						decided++
						switch {
						case err == nil:
							won[id] = append(won[id], seq)
						case errors.Is(err, ErrDuplicateOutcome) && errors.As(err, &dup) && seq == 0:
							lost[id] = append(lost[id], dup.Sequence)
						default:
							t.Errorf("append delivered: seq %d, %v", seq, err)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			for i := range ids {
				id := fmt.Sprintf("ord-race-%d", i)
				if len(won[id]) != 1 {
					t.Fatalf("%s: delivered recorded %d times, want once", id, len(won[id]))
				}
				if len(lost[id]) != racers-1 {
					t.Errorf("%s: %d appends refused, want %d", id, len(lost[id]), racers-1)
				}
				for _, s := range lost[id] {
					if s != won[id][0] {
						t.Errorf("%s: refusal names entry %d, the delivery is entry %d", id, s, won[id][0])
					}
				}
				got, err := logs[0].Query(ctx, Filter{RequestID: id, Event: EventDelivered})
				if err != nil || len(got) != 1 || got[0].Sequence != won[id][0] {
					t.Errorf("%s: stored deliveries %d, %v", id, len(got), err)
				}
			}
			for _, l := range logs {
				if err := l.Close(ctx); err != nil {
					t.Fatal(err)
				}
			}
			reader := openTestLog(t, openTestDB(t, dsn), Options{SubjectKey: testSubjectKey})
			rep, err := reader.Verify(ctx, testSigner(t))
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if want := int64(decided + ids); rep.Entries != want || rep.Unsealed != 0 || rep.Checkpoints < 2 {
				t.Errorf("report = %+v, want %d entries, >= 2 checkpoints, none unsealed", rep, want)
			}
		})
	}
}

// testPending prepares e as Append does, for a batch handed to commit.
func testPending(t *testing.T, e *Entry) *pending {
	c := *e
	c.SubjectHMAC = SubjectHMAC(testSubjectKey, e.SubjectID)
	p, err := newPending(&c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDuplicateOutcomeInBatch commits one batch mixing fresh entries with
// final outcomes already recorded and with duplicates within the batch,
// through the locked path and (on PostgreSQL) the single-statement one: the
// fresh entries commit gap-free, the duplicates are refused, the chain and
// its checkpoints verify.
func TestDuplicateOutcomeInBatch(t *testing.T) {
	for _, b := range backends {
		for _, path := range []string{"locked", "fast"} {
			if path == "fast" && b.name != "postgres" {
				continue
			}
			t.Run(b.name+"/"+path, func(t *testing.T) {
				ctx := t.Context()
				opts := testOptions(t)
				opts.CheckpointEvery = 4
				l := openTestLog(t, openTestDB(t, b.dsn(t)), opts)
				before := []*Entry{
					outcomeEntry(1, "r-delivered", EventDelivered, "allow"),
					outcomeEntry(2, "r-rejected", EventRejected, "deny", "invalid_request"),
					outcomeEntry(3, "r-denied", EventDecided, "deny", "no_consent"),
					outcomeEntry(4, "r-retried", EventDeliveryFailed, "allow", "delivery_failed: transient"),
				}
				for _, e := range before {
					if _, err := l.Append(ctx, e); err != nil {
						t.Fatal(err)
					}
				}
				tests := []struct {
					give *Entry
					// dupOf is the sequence of the outcome a refusal names
					// (-1: committed; 0: the batch's own winner).
					dupOf int64
				}{
					{outcomeEntry(10, "r-delivered", EventDelivered, "allow"), 1},
					{outcomeEntry(11, "r-new", EventDecided, "allow"), -1},
					{outcomeEntry(12, "r-new", EventDelivered, "allow"), -1},
					{outcomeEntry(13, "r-rejected", EventRejected, "deny", "invalid_request"), 2},
					{outcomeEntry(14, "r-new", EventDelivered, "allow"), 0},
					{outcomeEntry(15, "r-denied", EventDelivered, "allow"), 3},
					// A request decided again after a retried failure.
					{outcomeEntry(19, "r-retried", EventDecided, "allow"), -1},
					{outcomeEntry(16, "r-retried", EventDelivered, "allow"), -1},
					{outcomeEntry(17, "r-new", EventDeliveryFailed, "allow", "delivery_failed: permanent"), 0},
					{outcomeEntry(18, "r-delivered", EventReceived, "allow"), -1},
					// Decisions to allow a request whose story ended: sent
					// again after the stream forgot its id.
					{outcomeEntry(20, "r-delivered", EventDecided, "allow"), 1},
					{outcomeEntry(21, "r-denied", EventDecided, "allow"), 3},
					{outcomeEntry(22, "r-new", EventDecided, "allow"), 0},
				}
				batch := make([]*pending, len(tests))
				for i, tt := range tests {
					batch[i] = testPending(t, tt.give)
				}
				// The writer goroutine is idle (every Append returned), so
				// the test may drive a batch itself.
				if path == "locked" {
					l.lanes[0].head = nil
				}
				l.lanes[0].commit(batch)
				wantSeq := int64(len(before))
				var winner int64
				for i, tt := range tests {
					r := <-batch[i].res
					var dup *DuplicateOutcomeError
					switch {
					case tt.dupOf < 0:
						wantSeq++
						if r.err != nil || r.seq != wantSeq {
							t.Errorf("entry %d: seq %d, %v; want seq %d", i, r.seq, r.err, wantSeq)
						}
						if tt.give.RequestID == "r-new" && tt.give.Event == EventDelivered {
							winner = r.seq
						}
					case !errors.As(r.err, &dup) || !errors.Is(r.err, ErrDuplicateOutcome) || r.seq != 0:
						t.Errorf("entry %d: seq %d, %v; want ErrDuplicateOutcome", i, r.seq, r.err)
					case tt.dupOf > 0 && dup.Sequence != tt.dupOf, tt.dupOf == 0 && dup.Sequence != winner:
						t.Errorf("entry %d: refusal names entry %d", i, dup.Sequence)
					case dup.Event != tt.give.Event:
						t.Errorf("entry %d: refusal names event %s", i, dup.Event)
					}
				}
				appendN(t, l, 100, 3) // the writer continues the chain
				if _, err := l.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
				rep, err := l.Verify(ctx, testSigner(t))
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				if want := wantSeq + 3; rep.Entries != want || rep.LastSequence != want || rep.Unsealed != 0 {
					t.Errorf("report = %+v, want %d entries, all sealed", rep, want)
				}
			})
		}
	}
}

// TestDuplicateOutcomeAllRefused: a batch of duplicates only writes nothing
// and leaves the head where it was.
func TestDuplicateOutcomeAllRefused(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			l := openTestLog(t, openTestDB(t, b.dsn(t)), testOptions(t))
			e := outcomeEntry(1, "r-once", EventDelivered, "allow")
			if _, err := l.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
			e.Time = e.Time.Add(time.Second)
			if seq, err := l.Append(ctx, e); !errors.Is(err, ErrDuplicateOutcome) || seq != 0 {
				t.Fatalf("second delivered: seq %d, %v", seq, err)
			}
			if seq, err := l.Append(ctx, decidedEntry(2)); err != nil || seq != 2 {
				t.Fatalf("next entry: seq %d, %v; want 2", seq, err)
			}
			if _, err := l.Verify(ctx, testSigner(t)); err != nil {
				t.Fatalf("verify: %v", err)
			}
		})
	}
}

// TestRecordedFinalsUseIndexWithoutStatistics loads 50,000 entries into a
// new Postgres log (straight SQL, no ANALYZE, as for a log that is new or
// grew since autovacuum last looked) and asserts that the writer's look-up
// of final outcomes is planned on the request index, not as a read of the
// whole table, and finds what it should.
func TestRecordedFinalsUseIndexWithoutStatistics(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	openTestLog(t, db, testOptions(t))
	if _, err := db.ExecContext(ctx, `INSERT INTO audit_entries
		SELECT g, now(), CASE WHEN g % 2 = 0 THEN 'delivered' ELSE 'decided' END, 'r' || (g / 2), 'src', 'rcp',
		'DE', 'DE', 'delivery', 'ds', 'allow', '[]', 'contract', 'a', 1, 'domestic', '[]', '{}', 'k', 'd', 'v',
		md5((g % 20000)::text), md5(g::text), md5(g::text) FROM generate_series(1, 50000) g`); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("r%d", 100+i*50)
	}
	ids[0] = "r-none"
	var plan []byte
	q := db.NewRaw(pgRecordedFinals, pgdialect.Array(ids)).String()
	if err := db.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+q).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	p := string(plan)
	if strings.Contains(p, `"Seq Scan"`) || !strings.Contains(p, `"`+requestFinalIdx+`"`) {
		t.Errorf("final outcome look-up not planned on the request index:\n%s", p)
	}
	got, err := recordedFinals(ctx, db, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids)-1 {
		t.Errorf("found %d final outcomes, want %d", len(got), len(ids)-1)
	}
	if f, ok := got["r150"]; !ok || f.event != EventDelivered || f.seq != 300 {
		t.Errorf("r150 = %+v, %v; want delivered at 300", f, ok)
	}
}

// TestRecordedFinalsAgreeWithFinal stores one entry of every event, decision
// and kind of reason, each under its own request id, and checks that the
// writer's look-up (whose query filters on event and decision in SQL) finds
// exactly the ones Final calls final, on both stores.
func TestRecordedFinalsAgreeWithFinal(t *testing.T) {
	events := []Event{EventDecided, EventDelivered, EventDeliveryFailed, EventRejected, EventReceived,
		EventErasureNotified, EventRegistryApplied, EventConsentRecorded, EventErasureRecorded}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			db := openTestDB(t, b.dsn(t))
			l := openTestLog(t, db, testOptions(t))
			want := map[string]bool{}
			var ids []string
			i := 0
			for _, ev := range events {
				for _, decision := range []string{"allow", "deny"} {
					for _, reason := range []string{"delivery_failed: transient", "delivery_failed: permanent"} {
						i++
						e := outcomeEntry(i, fmt.Sprintf("r-%d", i), ev, decision, reason)
						if _, err := l.Append(ctx, e); err != nil {
							t.Fatalf("%s %s %s: %v", ev, decision, reason, err)
						}
						ids = append(ids, e.RequestID)
						want[e.RequestID] = e.Final()
					}
				}
			}
			got, err := recordedFinals(ctx, db, ids)
			if err != nil {
				t.Fatal(err)
			}
			finals := 0
			for j, id := range ids {
				if _, ok := got[id]; ok != want[id] {
					t.Errorf("entry %d (%s): recorded final %v, Final %v", j+1, id, ok, want[id])
				}
				if want[id] {
					finals++
				}
			}
			if finals == 0 || finals == len(ids) {
				t.Fatalf("%d of %d entries final: the test covers nothing", finals, len(ids))
			}
		})
	}
}

// TestFastInsertChecksRecordedFinals drives the single-statement path on
// Postgres by itself, with the unique index of final outcomes and without
// it (the statement then looks them up): a batch whose final outcomes are
// new is written in one statement; a batch with a final outcome already
// recorded writes nothing, leaves the head, and reports that the lock is
// needed. A recorded delivery_failed, whose reasons only the locked path's
// look-up reads, sends a later final outcome to the lock without the index;
// with it, a transient failure (not final) does not.
func TestFastInsertChecksRecordedFinals(t *testing.T) {
	for _, indexed := range []bool{true, false} {
		t.Run(map[bool]string{true: "indexed", false: "looked up"}[indexed], func(t *testing.T) {
			ctx := t.Context()
			db := openTestDB(t, postgresDSN(t))
			l := openTestLog(t, db, testOptions(t))
			for i, e := range []*Entry{
				outcomeEntry(1, "r-done", EventDelivered, "allow"),
				outcomeEntry(2, "r-retry", EventDeliveryFailed, "allow", "delivery_failed: transient"),
			} {
				if seq, err := l.Append(ctx, e); err != nil || seq != int64(i+1) {
					t.Fatalf("append %d: %d, %v", i, seq, err)
				}
			}
			ln := l.lanes[0]
			if ln.head == nil || ln.head.Seq != 2 {
				t.Fatalf("lane head %+v after two appends", ln.head)
			}
			if !ln.finalsIndexed {
				t.Fatal("the lane does not know the unique index of final outcomes")
			}
			if !indexed {
				// Back to the request index without a unique one.
				if err := requestFinalIndexDown(ctx, db); err != nil {
					t.Fatal(err)
				}
				if _, err := db.ExecContext(ctx, "DROP INDEX "+finalIdx); err != nil {
					t.Fatal(err)
				}
				ln.finalsIndexed = false
			}
			count := func() (n int) {
				if err := db.NewRaw("SELECT count(*) FROM audit_entries").Scan(ctx, &n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			for _, tt := range []struct {
				name  string
				batch []*Entry
				ok    bool
			}{
				{"recorded delivered", []*Entry{outcomeEntry(3, "r-new", EventDecided, "allow"), outcomeEntry(4, "r-done", EventDelivered, "allow")}, false},
				// A decision to allow is looked up whether or not the index
				// refuses a second final outcome: none refuses it.
				{"allow after delivered", []*Entry{outcomeEntry(11, "r-done", EventDecided, "allow")}, false},
				// A retried failure may be final (its reasons, which the
				// request index does not hold, tell): left to the lock.
				{"allow after a retried failure", []*Entry{outcomeEntry(12, "r-retry", EventDecided, "allow")}, false},
				{"recorded delivery_failed", []*Entry{outcomeEntry(5, "r-retry", EventDelivered, "allow")}, indexed},
				{"new finals", []*Entry{outcomeEntry(6, "r-new", EventDecided, "allow"), outcomeEntry(7, "r-new", EventDelivered, "allow"),
					outcomeEntry(8, "r-denied", EventDecided, "deny", "no_consent")}, true},
			} {
				before, head := count(), *ln.head
				batch := make([]*pending, len(tt.batch))
				for i, e := range tt.batch {
					batch[i] = testPending(t, e)
				}
				ok, refused, err := ln.fastInsert(ctx, batch, head)
				if err != nil || ok != tt.ok || len(refused) != 0 {
					t.Fatalf("%s: ok %v, %d refused, %v; want ok %v", tt.name, ok, len(refused), err, tt.ok)
				}
				want := before
				if ok {
					want += len(batch)
				}
				var stored headRow
				if err := db.NewSelect().Model(&stored).Where("id = 1").Scan(ctx); err != nil {
					t.Fatal(err)
				}
				if got := count(); got != want || (stored.Seq != head.Seq) == !ok || stored.Seq != ln.head.Seq {
					t.Fatalf("%s: %d entries (want %d), stored head %d, lane head %d, before %d", tt.name, got, want, stored.Seq, ln.head.Seq, head.Seq)
				}
			}
			// The locked path refuses the second delivery of r-done, and takes
			// the delivery after r-retry's transient failure if the fast path
			// did not.
			_, err := l.Append(ctx, outcomeEntry(9, "r-done", EventDelivered, "allow"))
			var dup *DuplicateOutcomeError
			if !errors.As(err, &dup) || dup.Sequence != 1 {
				t.Fatalf("second delivery of r-done: %v; want a duplicate of 1", err)
			}
			_, err = l.Append(ctx, outcomeEntry(13, "r-done", EventDecided, "allow"))
			if !errors.As(err, &dup) || dup.Sequence != 1 || dup.Event != EventDecided || dup.Recorded != EventDelivered {
				t.Fatalf("decision to allow r-done again: %v; want refused, delivered at 1", err)
			}
			_, err = l.Append(ctx, outcomeEntry(10, "r-retry", EventDelivered, "allow"))
			if indexed {
				if !errors.As(err, &dup) || dup.Sequence != 3 {
					t.Fatalf("second delivery of r-retry: %v; want a duplicate of 3", err)
				}
			} else if err != nil {
				t.Fatalf("delivered after a transient failure: %v", err)
			}
			if _, err := l.Verify(ctx, testSigner(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFastInsertLosesRaceQuietly: when another writer moved the head, the
// batch statement inserts nothing and fails nothing (a failed statement is
// an error with the whole row in the server's log, one per batch that lost
// the race), and the lane leaves the batch to the locked path.
func TestFastInsertLosesRaceQuietly(t *testing.T) {
	ctx := t.Context()
	dsn := postgresDSN(t)
	db := openTestDB(t, dsn)
	l := openTestLog(t, db, testOptions(t))
	if _, err := l.Append(ctx, decidedEntry(1)); err != nil {
		t.Fatal(err)
	}
	ln := l.lanes[0]
	stale := *ln.head
	// Another instance appends: the head moves past what this lane knows.
	other := openTestLog(t, openTestDB(t, dsn), testOptions(t))
	if _, err := other.Append(ctx, decidedEntry(2)); err != nil {
		t.Fatal(err)
	}
	count := func() (n int) {
		if err := db.NewRaw("SELECT count(*) FROM audit_entries").Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	batch := []*pending{testPending(t, decidedEntry(3)), testPending(t, decidedEntry(4))}
	st, err := ln.insertStmt(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := ln.link(batch, stale)
	res, err := st.ExecContext(ctx, ln.batchArgs(batch, stale, next, !ln.finalsIndexed)...)
	ln.releaseArgs()
	if err != nil {
		t.Fatalf("the statement of a batch that lost the race failed: %v", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 0 || count() != 2 {
		t.Fatalf("%d rows inserted (%v), %d entries, want none inserted and 2", n, err, count())
	}

	batch = []*pending{testPending(t, decidedEntry(5))}
	ok, refused, err := ln.fastInsert(ctx, batch, stale)
	if ok || len(refused) != 0 || err != nil || count() != 2 {
		t.Fatalf("fastInsert on a moved head: ok %v, %d refused, %v, %d entries; want the locked path and 2 entries", ok, len(refused), err, count())
	}
	// Through Append the batch takes the locked path and lands after the
	// other instance's entry.
	seq, err := l.Append(ctx, decidedEntry(6))
	if err != nil || seq != 3 {
		t.Fatalf("append after the race: %d, %v; want sequence 3", seq, err)
	}
}

// TestFinalOutcomes: the final outcome of each request that has one, read
// for ids spread over several chunks of the look-up; requests without a
// final outcome (decided only, a retried failure) and unknown ids are
// absent.
func TestFinalOutcomes(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			l := openTestLog(t, openTestDB(t, b.dsn(t)), testOptions(t))
			want := map[string]int64{}
			for _, e := range []*Entry{
				outcomeEntry(1, "r-delivered", EventDecided, "allow"),
				outcomeEntry(2, "r-delivered", EventDelivered, "allow"),
				outcomeEntry(3, "r-denied", EventDecided, "deny", "no_consent"),
				outcomeEntry(4, "r-retried", EventDecided, "allow"),
				outcomeEntry(5, "r-retried", EventDeliveryFailed, "allow", "delivery_failed: transient"),
				outcomeEntry(6, "r-failed", EventDeliveryFailed, "allow", "delivery_failed: permanent"),
				outcomeEntry(7, "r-decided", EventDecided, "allow"),
			} {
				seq, err := l.Append(ctx, e)
				if err != nil {
					t.Fatal(err)
				}
				if e.Final() {
					want[e.RequestID] = seq
				}
			}
			ids := make([]string, 2*finalOutcomesChunk+500)
			for i := range ids {
				ids[i] = fmt.Sprintf("r-unknown-%d", i)
			}
			ids[0], ids[finalOutcomesChunk+1], ids[2*finalOutcomesChunk+1] = "r-delivered", "r-denied", "r-failed"
			ids[10], ids[finalOutcomesChunk+10] = "r-retried", "r-decided"
			got, err := l.FinalOutcomes(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Errorf("%d outcomes, want %d: %v", len(got), len(want), got)
			}
			for id, seq := range want {
				e, ok := got[id]
				if !ok || e.Sequence != seq || e.RequestID != id || !e.Final() {
					t.Errorf("%s: %+v, want the final entry %d", id, e, seq)
				}
			}
			if r := got["r-denied"].Reasons; len(r) != 1 || r[0] != "no_consent" {
				t.Errorf("denial reasons %v", r)
			}
		})
	}
}
