package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

// chainSeqs returns the sequences of chain c's entries, in order.
func chainSeqs(tb testing.TB, db *bun.DB, c int) []int64 {
	tb.Helper()
	ly, err := loadLayout(context.Background(), db)
	if err != nil {
		tb.Fatal(err)
	}
	var seqs []int64
	if err := db.NewSelect().Model((*entryRow)(nil)).Column("seq").Order("seq").Scan(context.Background(), &seqs); err != nil {
		tb.Fatal(err)
	}
	var out []int64
	for _, s := range seqs {
		if ly.chainOf(s) == c && s > ly.fork {
			out = append(out, s)
		}
	}
	return out
}

// TestChainsTamper tampers with chain 2 of a log of four chains, forked
// after five entries of the single chain: 40 entries with a checkpoint of
// every chain after 20 and after 40. Verify must name the entry concerned.
func TestChainsTamper(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(ctx context.Context, db *bun.DB, seqs []int64) error
		finding Finding
		// seq picks the expected sequence from chain 2's; after is the
		// first of chain 2's entries after the first checkpoint.
		seq func(seqs []int64, after int64) int64
	}{
		{"change a field", func(ctx context.Context, db *bun.DB, seqs []int64) error {
			_, err := db.ExecContext(ctx, "UPDATE audit_entries SET recipient = 'elsewhere' WHERE seq = ?", seqs[2])
			return err
		}, FindingChanged, func(s []int64, _ int64) int64 { return s[2] }},
		{"change a field and rehash it", func(ctx context.Context, db *bun.DB, seqs []int64) error {
			return rehash(ctx, db, seqs[3], func(e *Entry) { e.Decision = "deny" })
		}, FindingChanged, func(s []int64, _ int64) int64 { return s[3] }},
		{"delete a row", func(ctx context.Context, db *bun.DB, seqs []int64) error {
			_, err := db.ExecContext(ctx, "DELETE FROM audit_entries WHERE seq = ?", seqs[1])
			return err
		}, FindingRemoved, func(s []int64, _ int64) int64 { return s[1] }},
		{"delete the chain's first row", func(ctx context.Context, db *bun.DB, seqs []int64) error {
			_, err := db.ExecContext(ctx, "DELETE FROM audit_entries WHERE seq = ?", seqs[0])
			return err
		}, FindingRemoved, func(s []int64, _ int64) int64 { return s[0] }},
		{"delete the chain's last row", func(ctx context.Context, db *bun.DB, seqs []int64) error {
			_, err := db.ExecContext(ctx, "DELETE FROM audit_entries WHERE seq = ?", seqs[len(seqs)-1])
			return err
		}, FindingRemoved, func(s []int64, _ int64) int64 { return s[len(s)-1] }},
		{"insert a row after the chain's head", func(ctx context.Context, db *bun.DB, seqs []int64) error {
			return copyRow(ctx, db, seqs[0], seqs[len(seqs)-1]+4)
		}, FindingInserted, func(s []int64, _ int64) int64 { return s[len(s)-1] + 4 }},
		{"replace a row", func(ctx context.Context, db *bun.DB, seqs []int64) error {
			if _, err := db.ExecContext(ctx, "DELETE FROM audit_entries WHERE seq = ?", seqs[2]); err != nil {
				return err
			}
			return copyRow(ctx, db, seqs[0], seqs[2])
		}, FindingChanged, func(s []int64, _ int64) int64 { return s[2] }},
		{"rewrite the chain consistently", func(ctx context.Context, db *bun.DB, seqs []int64) error {
			return rewriteChain(ctx, db, 2, seqs[len(seqs)-3:])
		}, FindingChanged, func(_ []int64, after int64) int64 { return after }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			db := openTestDB(t, postgresDSN(t))
			opts := testOptions(t)
			opts.CheckpointEvery = 1 << 30
			single := openTestLog(t, db, opts)
			appendN(t, single, 1, 5)
			if err := single.Close(ctx); err != nil {
				t.Fatal(err)
			}
			opts.Chains = 4
			l := openTestLog(t, db, opts)
			appendN(t, l, 6, 20)
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			firstHalf := chainSeqs(t, db, 2)
			appendN(t, l, 26, 20)
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			seqs := chainSeqs(t, db, 2)
			if len(firstHalf) < 2 || len(seqs)-len(firstHalf) < 3 {
				t.Fatalf("chain 2 holds %d entries before and %d after the first checkpoint; the test needs more",
					len(firstHalf), len(seqs)-len(firstHalf))
			}
			rep, err := l.Verify(ctx, testSigner(t))
			if err != nil || rep.Entries != 45 || rep.Unsealed != 0 {
				t.Fatalf("before tampering: %+v, %v", rep, err)
			}
			if err := tt.tamper(ctx, db, seqs); err != nil {
				t.Fatalf("tamper: %v", err)
			}
			rep, err = l.Verify(ctx, testSigner(t))
			var te *TamperError
			if !errors.As(err, &te) || !errors.Is(err, ErrTampered) {
				t.Fatalf("Verify() = %+v, %v; want a tamper error", rep, err)
			}
			want := tt.seq(seqs, seqs[len(firstHalf)])
			if te.Finding != tt.finding || te.Sequence != want {
				t.Errorf("Verify() found %s at %d (%s), want %s at %d (chain 2: %v)", te.Finding, te.Sequence, te.Detail,
					tt.finding, want, seqs)
			}
		})
	}
}

// copyRow inserts a copy of entry from as entry to, linked to from.
func copyRow(ctx context.Context, db *bun.DB, from, to int64) error {
	q := fmt.Sprintf(copyRowAs, to)
	q = q[:len(q)-len("20")] + fmt.Sprint(from)
	_, err := db.ExecContext(ctx, q)
	return err
}

// rewriteChain rewrites the entries seqs of chain c (its last ones)
// consistently, including the chain's head row: only a signed checkpoint
// can tell.
func rewriteChain(ctx context.Context, db *bun.DB, c int, seqs []int64) error {
	var first entryRow
	if err := db.NewSelect().Model(&first).Where("seq = ?", seqs[0]).Scan(ctx); err != nil {
		return err
	}
	prev := first.PrevHash
	for _, s := range seqs {
		var r entryRow
		if err := db.NewSelect().Model(&r).Where("seq = ?", s).Scan(ctx); err != nil {
			return err
		}
		e, err := r.entry()
		if err != nil {
			return err
		}
		e.Recipient, e.PrevHash = "elsewhere", prev
		e.Hash = computeHash(&e)
		prev = e.Hash
		row := toRow(&e)
		if _, err := db.NewUpdate().Model(&row).WherePK().Exec(ctx); err != nil {
			return err
		}
	}
	_, err := db.NewUpdate().Model((*headRow)(nil)).Set("hash = ?", prev).Where("id = ?", c+1).Exec(ctx)
	return err
}

// TestChainsConcurrentLogs runs three Logs on separate connection pools (as
// three broker instances would), which fork a single-chain log into four
// chains at once, and appends from all of them concurrently: decisions, and
// for some requests a delivered outcome from every Log, of which exactly one
// must be recorded. Then the chains verify, every chain has entries, and
// every sequence is taken once.
func TestChainsConcurrentLogs(t *testing.T) {
	ctx := t.Context()
	dsn := postgresDSN(t)
	opts := testOptions(t)
	opts.CheckpointEvery = 50
	single := openTestLog(t, openTestDB(t, dsn), opts)
	appendN(t, single, 0, 7)
	if err := single.Close(ctx); err != nil {
		t.Fatal(err)
	}

	const instances, appenders, perAppender, outcomes = 3, 8, 25, 30
	logs := make([]*Log, instances)
	var opening sync.WaitGroup
	for i := range logs {
		opening.Go(func() {
			o := opts
			o.Chains = 4
			l, err := Open(ctx, openTestDB(t, dsn), o)
			if err != nil {
				t.Errorf("open log %d: %v", i, err)
				return
			}
			logs[i] = l
		})
	}
	opening.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[string]int{}
	for i, l := range logs {
		for a := range appenders {
			wg.Go(func() {
				for n := range perAppender {
					e := decidedEntry(100000*(i+1) + 1000*a + n)
					if _, err := l.Append(ctx, e); err != nil {
						t.Errorf("log %d: append: %v", i, err)
						return
					}
				}
			})
		}
		wg.Go(func() {
			for n := range outcomes {
				e := decidedEntry(n)
				e.Event, e.RequestID = EventDelivered, fmt.Sprintf("shared-%d", n)
				_, err := l.Append(ctx, e)
				switch {
				case err == nil:
					mu.Lock()
					won[e.RequestID]++
					mu.Unlock()
				case !errors.Is(err, ErrDuplicateOutcome):
					t.Errorf("log %d: append outcome: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	for i, l := range logs {
		if err := l.Close(ctx); err != nil {
			t.Errorf("close log %d: %v", i, err)
		}
	}
	for n := range outcomes {
		if id := fmt.Sprintf("shared-%d", n); won[id] != 1 {
			t.Errorf("request %s: %d delivered outcomes recorded, want 1", id, won[id])
		}
	}
	db := openTestDB(t, dsn)
	reader := openTestLog(t, db, Options{SubjectKey: testSubjectKey})
	rep, err := reader.Verify(ctx, testSigner(t))
	want := int64(7 + instances*appenders*perAppender + outcomes)
	if err != nil || rep.Entries != want || rep.Unsealed != 0 || rep.Checkpoints < 4 {
		t.Fatalf("verify: %+v, %v; want %d entries, all sealed", rep, err, want)
	}
	ly, err := loadLayout(ctx, db)
	if err != nil || ly != (layout{k: 4, fork: 7}) {
		t.Fatalf("layout %+v, %v; want 4 chains forked at 7", ly, err)
	}
	for c := range 4 {
		if n := len(chainSeqs(t, db, c)); n < 50 {
			t.Errorf("chain %d holds %d entries", c, n)
		}
	}
}

// TestChainsOpen checks how the number of chains is fixed: SQLite takes one,
// a log forks once, a Log asking for another number fails with both
// numbers, and a Log asking for none takes the recorded number.
func TestChainsOpen(t *testing.T) {
	ctx := t.Context()
	opts := testOptions(t)
	opts.Chains = 4
	if _, err := Open(ctx, openTestDB(t, sqliteDSN(t)), opts); err == nil {
		t.Error("SQLite opened with 4 chains")
	}
	db := openTestDB(t, postgresDSN(t))
	l := openTestLog(t, db, opts)
	appendN(t, l, 1, 12)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	opts.Chains = 2
	_, err := Open(ctx, db, opts)
	if !errors.Is(err, ErrChainsMismatch) || !bytes.Contains([]byte(err.Error()), []byte("2 configured, the database has 4")) {
		t.Errorf("open with 2 chains: %v; want ErrChainsMismatch naming 2 and 4", err)
	}
	opts.Chains = 0
	l = openTestLog(t, db, opts)
	if l.ly != (layout{k: 4, fork: 0}) {
		t.Errorf("layout %+v, want the recorded 4 chains", l.ly)
	}
	appendN(t, l, 13, 12)
	if rep, err := l.Verify(ctx, testSigner(t)); err != nil || rep.Entries != 24 {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}

// TestChainsRetention archives a log of four chains twice, the first time
// across the fork, and checks that each archive verifies on its own, that
// the rest verifies from the per-chain anchors, and that appends continue.
func TestChainsRetention(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	opts := testOptions(t)
	opts.CheckpointEvery = 1 << 30
	single := openTestLog(t, db, opts)
	old := testTime.Add(-72 * time.Hour)
	appendAt := func(l *Log, from, n int, at time.Time) {
		for i := from; i < from+n; i++ {
			e := decidedEntry(i)
			e.Time = at
			if _, err := l.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendAt(single, 1, 6, old)
	if err := single.Close(ctx); err != nil {
		t.Fatal(err)
	}
	opts.Chains = 4
	l := openTestLog(t, db, opts)
	appendAt(l, 7, 40, old)
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	appendAt(l, 47, 40, old.Add(24*time.Hour))
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	appendAt(l, 87, 40, testTime)

	for round, horizon := range []time.Time{old.Add(time.Hour), old.Add(25 * time.Hour)} {
		var buf bytes.Buffer
		m, jws, err := l.Archive(ctx, nil, horizon, &buf)
		if err != nil || m == nil {
			t.Fatalf("archive %d: %+v, %v", round, m, err)
		}
		if m.Chains != 4 || m.ForkSequence != 6 || len(m.ToChains) != 4 || (round == 1) != (len(m.FromChains) == 4) {
			t.Errorf("archive %d: manifest = %+v", round, m)
		}
		if _, err := VerifyArchive(ctx, bytes.NewReader(buf.Bytes()), jws, testSigner(t)); err != nil {
			t.Errorf("verify archive %d: %v", round, err)
		}
		tampered := bytes.Replace(buf.Bytes(), []byte("swiftship-de"), []byte("swiftship-xx"), 1)
		if _, err := VerifyArchive(ctx, bytes.NewReader(tampered), jws, testSigner(t)); !errors.Is(err, ErrTampered) {
			t.Errorf("tampered archive %d: %v", round, err)
		}
		var left int64
		if err := db.NewSelect().Model((*entryRow)(nil)).ColumnExpr("COUNT(*)").Scan(ctx, &left); err != nil {
			t.Fatal(err)
		}
		rep, err := l.Verify(ctx, testSigner(t))
		if err != nil || rep.Anchor != m.ToSequence || rep.Entries != left {
			t.Fatalf("verify after archive %d: %+v, %v", round, rep, err)
		}
		appendAt(l, 1000*(round+1), 12, testTime)
	}
	rep, err := l.Verify(ctx, testSigner(t))
	if err != nil {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM audit_entries WHERE seq = (SELECT MIN(seq) FROM audit_entries)"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Verify(ctx, testSigner(t)); !errors.Is(err, ErrTampered) {
		t.Errorf("first retained entry deleted: %v", err)
	}
}

// TestChainsStaleWriter opens a single-chain Log, then forks the log from
// another: the first Log's appends must fail rather than write the single
// chain over the other chains' places, and the log must still verify.
func TestChainsStaleWriter(t *testing.T) {
	ctx := t.Context()
	dsn := postgresDSN(t)
	opts := testOptions(t)
	stale := openTestLog(t, openTestDB(t, dsn), opts)
	appendN(t, stale, 1, 3)
	opts.Chains = 4
	forked := openTestLog(t, openTestDB(t, dsn), opts)
	appendN(t, forked, 4, 12)
	for i := range 4 {
		if seq, err := stale.Append(ctx, decidedEntry(100+i)); err == nil {
			t.Errorf("single-chain Log appended entry %d after the fork", seq)
		}
	}
	appendN(t, forked, 20, 4)
	rep, err := forked.Verify(ctx, testSigner(t))
	if err != nil || rep.Entries != 19 {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}

// TestChainsStableSequence: with one chain the stable sequence is the last
// written; after a fork to two chains it stays below a sequence the lagging
// chain has yet to fill, and every entry up to it is there.
func TestChainsStableSequence(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	opts := testOptions(t)
	opts.CheckpointEvery = 1 << 30
	stable := func(l *Log, want int64) {
		t.Helper()
		got, err := l.StableSequence(ctx)
		if err != nil || got != want {
			t.Fatalf("StableSequence = %d, %v; want %d", got, err, want)
		}
		entries, err := l.Query(ctx, Filter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var below int64
		for _, e := range entries {
			if e.Sequence <= got {
				below++
			}
		}
		if below != got {
			t.Fatalf("%d entries at or below the stable sequence %d", below, got)
		}
	}
	single := openTestLog(t, db, opts)
	appendN(t, single, 0, 6)
	stable(single, 6)
	if err := single.Close(ctx); err != nil {
		t.Fatal(err)
	}
	opts.Chains = 2
	l := openTestLog(t, db, opts)
	stable(l, 6) // the fork
	// An entry of the chain that holds 8, 10, ... and then two of the chain
	// that holds 7, 9, ...
	onChain := func(c, from int) *Entry {
		for i := from; ; i++ {
			e := decidedEntry(i)
			if (layout{k: 2}).route(e.RequestID) == c {
				return e
			}
		}
	}
	steps := []struct {
		chain           int
		seq, wantStable int64
	}{
		{0, 8, 6}, // 7 is still to come
		{1, 7, 7},
		{1, 9, 8},
	}
	from := 100
	for _, st := range steps {
		e := onChain(st.chain, from)
		seq, err := l.Append(ctx, e)
		if err != nil || seq != st.seq {
			t.Fatalf("append on chain %d: seq %d, %v; want %d", st.chain, seq, err, st.seq)
		}
		stable(l, st.wantStable)
		from += 100 // the next request id is a new one
	}
}
