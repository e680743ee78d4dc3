package compliance

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// The console's figures (the overview, the records of processing, the
// registry and agreement versions) are counts of entries, which the audit
// log never changes once written. A rollup keeps them per time bucket (an
// hour, a day, or none), for every entry up to a sequence (hi) whose time
// is from a given bucket on (from), and brings them up to date by reading
// only the entries written since: a call reads the log's new entries and
// the partial buckets at the window's two ends, not the whole window.
//
// Which entries the rollup holds is decided by sequence, never by time: an
// entry's time is its writer's clock, and with several instances or chains
// entries are not written in time order. hi is always a stable sequence
// (AuditLog.StableSequence): every entry up to it is committed, and no entry
// at or below it will be added, so counting (hi, S] later misses nothing and
// counts nothing twice. The one change to written entries, an archive that
// removes the oldest, is seen in audit_archives and starts the rollup again.

// hourLayout is the rollup's bucket key: the UTC hour as bucketExpr writes
// it. Its first 10 bytes are the day.
const hourLayout = "2006-01-02 15"

// bucketing is how entries are counted per time bucket: group is the SQL
// expression entries are grouped by, and key the expression that writes a
// group's bucket, from the column b, as the bucket's key (hourLayout, or its
// first 10 bytes for a day). On PostgreSQL entries are grouped by the
// truncated time and only each group's is written out: to_char on every
// entry took the first build of a rollup to twice the time of the
// same count by day.
type bucketing struct{ group, key string }

// bucketExpr returns the bucketing of an entry's UTC day or, hourly, its
// UTC hour.
func bucketExpr(db bun.IDB, hourly bool) bucketing {
	pg := db.Dialect().Name() == dialect.PG
	switch {
	case pg && hourly:
		return bucketing{"date_trunc('hour', at AT TIME ZONE 'UTC')", "to_char(g.b, 'YYYY-MM-DD HH24')"}
	case pg:
		return bucketing{"date_trunc('day', at AT TIME ZONE 'UTC')", "to_char(g.b, 'YYYY-MM-DD')"}
	case hourly:
		return bucketing{"substr(at, 1, 10) || ' ' || substr(at, 12, 2)", "g.b"}
	}
	return bucketing{"substr(at, 1, 10)", "g.b"}
}

// oneBucket counts every entry in one bucket, the empty key.
var oneBucket = bucketing{"''", "g.b"}

// grouped returns the select of bucket (as "bucket") and cols from inner,
// which selects the bucket's group as b and then cols, and groups by them.
func grouped(db bun.IDB, bk bucketing, inner *bun.SelectQuery, cols string) *bun.SelectQuery {
	return db.NewSelect().TableExpr("(?) AS g", inner).ColumnExpr(bk.key + " AS bucket").ColumnExpr(cols)
}

// counter is what a rollup counts into: cells keyed by a time bucket (an
// hour or a day, as bucketExpr writes it), each key starting with it.
type counter interface {
	// count adds the entries where selects, bucketed by bk; byTime as for
	// whereIs.
	count(ctx context.Context, db bun.IDB, bk bucketing, byTime bool, where func(*bun.SelectQuery) *bun.SelectQuery) error
	// size is the number of cells.
	size() int
	// encode writes the cells as JSON, which decode adds to empty cells.
	encode() ([]byte, error)
	decode([]byte) error
}

// tallyKey is one cell of a tally: a bucket (a day, or an hour), a
// destination country and an outcome.
type tallyKey struct{ bucket, country, decision string }

// tally holds decision counts per cell, and the refusal reasons (the
// reasons column's JSON list, of decisions to deny) per bucket.
type tally struct {
	counts  map[tallyKey]int64
	reasons map[[2]string]int64
}

func newTally() *tally {
	return &tally{counts: map[tallyKey]int64{}, reasons: map[[2]string]int64{}}
}

func (t *tally) size() int { return len(t.counts) + len(t.reasons) }

// whereIs adds "col = value" to q. byTime says that the query's other
// conditions bound the entries' time more narrowly than col does: SQLite,
// which keeps no statistics, would otherwise read col's index (every
// decision, say) rather than the range of the time index, and is told not
// to (a unary + keeps a column's indexes out of SQLite's plan).
// PostgreSQL's planner chooses by its statistics.
func whereIs(q *bun.SelectQuery, db bun.IDB, byTime bool, col, value string) *bun.SelectQuery {
	if byTime && db.Dialect().Name() != dialect.PG {
		return q.Where("+"+col+" = ?", value)
	}
	return q.Where(col+" = ?", value)
}

// count adds to t the decisions that where selects, bucketed by bk. One
// query reads both the counts and the reasons. byTime as for whereIs.
func (t *tally) count(ctx context.Context, db bun.IDB, bk bucketing, byTime bool, where func(*bun.SelectQuery) *bun.SelectQuery) error {
	var rows []struct {
		Bucket   string `bun:"bucket"`
		Country  string `bun:"country"`
		Decision string `bun:"decision"`
		Reasons  string `bun:"reasons"`
		N        int64  `bun:"n"`
	}
	inner := db.NewSelect().TableExpr(entriesTable).ColumnExpr(bk.group + " AS b").
		ColumnExpr("recipient_country AS country, decision, reasons, count(*) AS n").GroupExpr("1, 2, 3, 4")
	inner = where(whereIs(inner, db, byTime, "event", "decided"))
	if err := grouped(db, bk, inner, "country, decision, reasons, n").Scan(ctx, &rows); err != nil {
		return fmt.Errorf("compliance: overview: %w", err)
	}
	for _, r := range rows {
		t.counts[tallyKey{r.Bucket, r.Country, r.Decision}] += r.N
		if r.Decision == "deny" {
			t.reasons[[2]string{r.Bucket, r.Reasons}] += r.N
		}
	}
	return nil
}

// overview turns t, bucketed by day, into the figures of [from, to).
func (t *tally) overview(from, to time.Time) *Overview {
	ov := &Overview{From: from, To: to, Days: make([]DayCount, 0, len(t.counts)), TopReasons: []ReasonCount{}}
	for k, n := range t.counts {
		ov.Days = append(ov.Days, DayCount{Day: k.bucket, Country: k.country, Decision: k.decision, Count: n})
		if k.decision == "allow" {
			ov.Allowed += n
		} else {
			ov.Refused += n
		}
	}
	sort.Slice(ov.Days, func(i, j int) bool {
		a, b := ov.Days[i], ov.Days[j]
		if a.Day != b.Day {
			return a.Day < b.Day
		}
		if a.Country != b.Country {
			return a.Country < b.Country
		}
		return a.Decision < b.Decision
	})
	counts := map[string]int64{}
	for k, n := range t.reasons {
		var list []string
		if json.Unmarshal([]byte(k[1]), &list) != nil {
			continue
		}
		for _, reason := range list {
			counts[reason] += n
		}
	}
	for reason, n := range counts {
		ov.TopReasons = append(ov.TopReasons, ReasonCount{Reason: reason, Text: ReasonText(reason), Count: n})
	}
	sort.Slice(ov.TopReasons, func(i, j int) bool {
		a, b := ov.TopReasons[i], ov.TopReasons[j]
		return a.Count > b.Count || a.Count == b.Count && a.Reason < b.Reason
	})
	if len(ov.TopReasons) > 10 {
		ov.TopReasons = ov.TopReasons[:10]
	}
	return ov
}

// keepBuilding returns the context a rollup is brought up to date in: ctx
// without its cancellation. A first build counts as much as the window or
// the whole log; a caller who gives up (a browser reloading the page) would
// otherwise throw that work away, and every later call begin it again.
// Callers waiting for the rollup's lock get it when the build is done.
func keepBuilding(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// maxRollupCells bounds the rollup's memory: a rollup holding more cells
// (an hour, a country and an outcome, or an hour and a list of reasons) is
// started again from the window asked for. A month of hours with twenty
// destinations holds about 30,000; the bound is reached after years of
// windows reaching back, and costs one build then. A variable for tests.
var maxRollupCells = 200_000

// rollupState is what a rollup counts: every entry up to the sequence hi,
// as the log stood after its last archive (archived).
type rollupState struct {
	built    bool
	hi       int64
	archived int64
}

// advance reads the log's last archive and stable sequence, in that order
// (an archive committed in between is seen on the next call), and clears
// built when the rollup counts entries the log no longer holds: an archive
// removed some, or the log is behind it.
func (st *rollupState) advance(ctx context.Context, db *bun.DB, log AuditLog) (stable, archived int64, err error) {
	if archived, err = lastArchived(ctx, db); err != nil {
		return 0, 0, err
	}
	if stable, err = log.StableSequence(ctx); err != nil {
		return 0, 0, fmt.Errorf("compliance: stable sequence: %w", err)
	}
	if archived != st.archived || stable < st.hi {
		st.built = false
	}
	return stable, archived, nil
}

// rollup is the count (cells) of every entry with a sequence up to hi and
// a time from from on (every entry, from the zero time), in buckets of unit
// (an hour or a day; cells without buckets ignore it). A rollup is given
// its unit and newCells before first use, and built then.
type rollup struct {
	mu sync.Mutex
	rollupState
	unit     time.Duration
	newCells func() counter
	from     time.Time // a bucket's start
	cells    counter
	// name is the rollup's saved row (rollup_store.go); "" keeps it in
	// memory only. restoreTried: the process has looked for it, as the
	// log stood after the archive restoreArchived.
	name            string
	restoreTried    bool
	restoreArchived int64
	saved           savedState
	log             *slog.Logger
	builds          int // counts from the log of the whole range, for tests
	// readOnly: a saved rollup read for one answer, never built nor saved
	// (BuildROPAFromSaved).
	readOnly bool
}

// The saved rollups' names, with the format of their cells. ropa/2 counts
// deliveries; a saved ropa/1 (which counted allow decisions) is not read.
const (
	overviewRollup = "overview/1"
	ropaRollup     = "ropa/2"
	versionsRollup = "versions/1"
)

// init sets r's name (its saved row), bucket unit (0: none), cells and
// logger before first use.
func (r *rollup) init(name string, unit time.Duration, newCells func() counter, log *slog.Logger) {
	r.name, r.unit, r.newCells, r.log = name, unit, newCells, log
}

// lastArchived returns the highest sequence an archive has removed (0 when
// none has).
func lastArchived(ctx context.Context, db *bun.DB) (int64, error) {
	var seq sql.NullInt64
	if err := db.NewSelect().TableExpr("audit_archives").ColumnExpr("max(to_seq)").Scan(ctx, &seq); err != nil {
		return 0, fmt.Errorf("compliance: read archives: %w", err)
	}
	return seq.Int64, nil
}

// update brings the rollup up to the log's stable sequence and back to the
// bucket from at least, and returns the sequence it holds entries up to.
// The caller holds r.mu.
func (r *rollup) update(ctx context.Context, db *bun.DB, log AuditLog, from time.Time) (int64, error) {
	stable, archived, err := r.advance(ctx, db, log)
	if err != nil {
		return 0, err
	}
	// A saved rollup is looked for once, and again after each archive:
	// another process may have counted the log as that archive left it.
	if !r.built && r.name != "" && (!r.restoreTried || archived != r.restoreArchived) {
		r.restoreTried, r.restoreArchived = true, archived
		if _, err := r.restore(ctx, db, stable, archived); err != nil {
			r.log.Warn("saved rollup not taken; counting from the log", "rollup", r.name, "err", err)
		}
	}
	if r.built && r.cells.size() > maxRollupCells {
		r.built = false
	}
	bk := bucketExpr(db, r.unit == time.Hour)
	must := false
	defer func() {
		if err := r.save(ctx, db, must); err != nil {
			r.log.Warn("rollup not saved; it goes on in memory", "rollup", r.name, "err", err)
		}
	}()
	switch {
	case !r.built && r.readOnly:
		return 0, errNoSavedRollup
	case !r.built:
		must = true
		r.builds++
		c := r.newCells()
		err := hashGrouping(ctx, db, func(db bun.IDB) error {
			return c.count(ctx, db, bk, false, func(q *bun.SelectQuery) *bun.SelectQuery {
				return since(q.Where("seq <= ?", stable), from)
			})
		})
		if err != nil {
			return 0, err
		}
		r.rollupState, r.from, r.cells = rollupState{built: true, hi: stable, archived: archived}, from, c
		return r.hi, nil
	case from.Before(r.from):
		err := r.cells.count(ctx, db, bk, true, func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("seq <= ?", r.hi).Where("at >= ?", from).Where("at < ?", r.from)
		})
		if err != nil {
			// Counts may have been added for part of the range.
			r.built = false
			return 0, err
		}
		r.from, must = from, true
	}
	if stable > r.hi {
		err := r.cells.count(ctx, db, bk, false, func(q *bun.SelectQuery) *bun.SelectQuery {
			return since(q.Where("seq > ?", r.hi).Where("seq <= ?", stable), r.from)
		})
		if err != nil {
			r.built = false
			return 0, err
		}
		r.hi = stable
	}
	return r.hi, nil
}

// hashGrouping runs count, a rollup's first count over the whole window,
// so that PostgreSQL groups by hashing. Its planner estimates a group per
// entry for a key of many columns and a time bucket (85,000 for 186 real
// ones on 100,000 entries), and for that many it sorts every entry, on
// disk past work_mem, which took the records of processing's first call
// to twice or more the time of the same count without buckets
// (docs/compliance.md, "What the console's figures cost"). A rollup's
// groups are few (buckets times flows or countries), and a hash aggregate
// that outgrows its memory spills to disk rather than fail, so the
// transaction tells the planner to avoid the sort. SQLite counts as it is.
func hashGrouping(ctx context.Context, db *bun.DB, count func(bun.IDB) error) error {
	if db.Dialect().Name() != dialect.PG {
		return count(db)
	}
	return db.RunInTx(ctx, &sql.TxOptions{ReadOnly: true}, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, "SET LOCAL enable_sort = off"); err != nil {
			return fmt.Errorf("compliance: rollup: %w", err)
		}
		return count(tx)
	})
}

// since bounds q to the entries from t on; the zero time bounds nothing.
func since(q *bun.SelectQuery, t time.Time) *bun.SelectQuery {
	if t.IsZero() {
		return q
	}
	return q.Where("at >= ?", t)
}

// fromRollup counts [from, to): the whole buckets inside it from r, which
// it brings up to date and hands to take under its lock with the range of
// bucket keys [lo, hi) to read, and the rest (the partial buckets at
// either end, and entries written since r's stable sequence) from the log
// into rest, bucketed by day.
func (s *Server) fromRollup(ctx context.Context, r *rollup, from, to time.Time, rest counter, take func(lo, hi string)) error {
	return windowFromRollup(ctx, s.opts.DB, s.opts.Audit, r, from, to, rest, take)
}

// windowFromRollup is fromRollup on db and log.
func windowFromRollup(ctx context.Context, db *bun.DB, log AuditLog, r *rollup, from, to time.Time, rest counter, take func(lo, hi string)) error {
	layout := hourLayout[:10]
	if r.unit == time.Hour {
		layout = hourLayout
	}
	first := from.UTC().Truncate(r.unit)
	if first.Before(from) {
		first = first.Add(r.unit)
	}
	end := to.UTC().Truncate(r.unit)
	hi := int64(0)
	if first.Before(end) {
		r.mu.Lock()
		var err error
		hi, err = r.update(keepBuilding(ctx), db, log, first)
		if err != nil {
			r.mu.Unlock()
			return err
		}
		// Bucket keys sort as their times do.
		take(first.Format(layout), end.Format(layout))
		r.mu.Unlock()
	} else {
		// No whole bucket: everything is read from the log.
		first, end = to, to
	}
	// The rest, in three range scans: the partial buckets at either end (by
	// time), and what the log holds above the rollup in the whole buckets
	// (by sequence).
	for _, q := range []struct {
		byTime bool
		where  func(q *bun.SelectQuery) *bun.SelectQuery
	}{
		{true, func(q *bun.SelectQuery) *bun.SelectQuery { return q.Where("at >= ?", from).Where("at < ?", first) }},
		{true, func(q *bun.SelectQuery) *bun.SelectQuery { return q.Where("at >= ?", end).Where("at < ?", to) }},
		{false, func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("seq > ?", hi).Where("at >= ?", first).Where("at < ?", end)
		}},
	} {
		if err := rest.count(ctx, db, bucketExpr(db, false), q.byTime, q.where); err != nil {
			return err
		}
	}
	return nil
}

// rollupOverview computes the figures of [from, to): the whole hours inside
// it from the overview's rollup, the rest from the log (fromRollup).
func (s *Server) rollupOverview(ctx context.Context, from, to time.Time) (*Overview, error) {
	days := newTally()
	err := s.fromRollup(ctx, &s.rollup, from, to, days, func(lo, hi string) {
		hours := s.rollup.cells.(*tally)
		for k, n := range hours.counts {
			if k.bucket >= lo && k.bucket < hi {
				days.counts[tallyKey{k.bucket[:10], k.country, k.decision}] += n
			}
		}
		for k, n := range hours.reasons {
			if k[0] >= lo && k[0] < hi {
				days.reasons[[2]string{k[0][:10], k[1]}] += n
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return days.overview(from, to), nil
}
