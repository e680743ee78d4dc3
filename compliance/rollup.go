package compliance

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// The overview's figures are counts of decisions, which the audit log never
// changes once written. The rollup below keeps them per UTC hour, for
// every entry up to a sequence (hi) whose time is from a given hour on
// (from), and brings them up to date by reading only the entries written
// since: a refresh of the console's overview reads the log's new entries and
// the partial hours at the window's two ends, not the whole window.
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

// bucketExpr is the SQL expression of an entry's UTC day (YYYY-MM-DD) or,
// hourly, its UTC hour (hourLayout).
func bucketExpr(db *bun.DB, hourly bool) string {
	pg := db.Dialect().Name() == dialect.PG
	switch {
	case pg && hourly:
		return "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')"
	case pg:
		return "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
	case hourly:
		return "substr(at, 1, 10) || ' ' || substr(at, 12, 2)"
	}
	return "substr(at, 1, 10)"
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

// count adds to t the decisions that where selects, bucketed by bucket (an
// SQL expression). One query reads both the counts and the reasons. byTime
// says that where bounds the entries' time more narrowly than anything
// else: SQLite, which keeps no statistics, would otherwise read the event
// index (every decision) rather than the range of the time index, and is
// told not to (a unary + keeps a column's indexes out of SQLite's plan).
// PostgreSQL's planner chooses by its statistics.
func (t *tally) count(ctx context.Context, db *bun.DB, bucket string, byTime bool, where func(*bun.SelectQuery) *bun.SelectQuery) error {
	var rows []struct {
		Bucket   string `bun:"bucket"`
		Country  string `bun:"country"`
		Decision string `bun:"decision"`
		Reasons  string `bun:"reasons"`
		N        int64  `bun:"n"`
	}
	q := db.NewSelect().TableExpr(entriesTable).
		ColumnExpr(bucket + " AS bucket").ColumnExpr("recipient_country AS country").
		ColumnExpr("decision").ColumnExpr("reasons").ColumnExpr("count(*) AS n").
		GroupExpr("1, 2, 3, 4")
	if byTime && db.Dialect().Name() != dialect.PG {
		q = q.Where("+event = ?", "decided")
	} else {
		q = q.Where("event = ?", "decided")
	}
	if err := where(q).Scan(ctx, &rows); err != nil {
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

// rollup is the hourly tally of every decision with a sequence up to hi and
// a time from from on. The zero value holds nothing and is built on first
// use.
type rollup struct {
	mu sync.Mutex
	rollupState
	from  time.Time // an hour
	hours *tally
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
// hour from at least, and returns the sequence it holds entries up to.
// The caller holds r.mu.
func (r *rollup) update(ctx context.Context, db *bun.DB, log AuditLog, from time.Time) (int64, error) {
	stable, archived, err := r.advance(ctx, db, log)
	if err != nil {
		return 0, err
	}
	if r.built && len(r.hours.counts)+len(r.hours.reasons) > maxRollupCells {
		r.built = false
	}
	hour := bucketExpr(db, true)
	switch {
	case !r.built:
		t := newTally()
		err := t.count(ctx, db, hour, false, func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("seq <= ?", stable).Where("at >= ?", from)
		})
		if err != nil {
			return 0, err
		}
		r.rollupState, r.from, r.hours = rollupState{built: true, hi: stable, archived: archived}, from, t
		return r.hi, nil
	case from.Before(r.from):
		err := r.hours.count(ctx, db, hour, true, func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("seq <= ?", r.hi).Where("at >= ?", from).Where("at < ?", r.from)
		})
		if err != nil {
			// Counts may have been added for part of the range.
			r.built = false
			return 0, err
		}
		r.from = from
	}
	if stable > r.hi {
		err := r.hours.count(ctx, db, hour, false, func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("seq > ?", r.hi).Where("seq <= ?", stable).Where("at >= ?", r.from)
		})
		if err != nil {
			r.built = false
			return 0, err
		}
		r.hi = stable
	}
	return r.hi, nil
}

// rollupOverview computes the figures of [from, to): the whole hours inside
// it from the rollup, and the rest (the partial hours at either end, and
// entries written since the rollup's stable sequence) from the log.
func (s *Server) rollupOverview(ctx context.Context, from, to time.Time) (*Overview, error) {
	db := s.opts.DB
	first := from.UTC().Truncate(time.Hour)
	if first.Before(from) {
		first = first.Add(time.Hour)
	}
	end := to.UTC().Truncate(time.Hour)
	days := newTally()
	hi := int64(0)
	if first.Before(end) {
		r := &s.rollup
		r.mu.Lock()
		var err error
		hi, err = r.update(keepBuilding(ctx), db, s.opts.Audit, first)
		if err != nil {
			r.mu.Unlock()
			return nil, err
		}
		// Hour keys sort as their hours do.
		lo, hiKey := first.Format(hourLayout), end.Format(hourLayout)
		for k, n := range r.hours.counts {
			if k.bucket >= lo && k.bucket < hiKey {
				days.counts[tallyKey{k.bucket[:10], k.country, k.decision}] += n
			}
		}
		for k, n := range r.hours.reasons {
			if k[0] >= lo && k[0] < hiKey {
				days.reasons[[2]string{k[0][:10], k[1]}] += n
			}
		}
		r.mu.Unlock()
	} else {
		// No whole hour: everything is read from the log.
		first, end = to, to
	}
	// The rest, in three range scans: the partial hours at either end (by
	// time), and what the log holds above the rollup in the whole hours (by
	// sequence).
	rest := []struct {
		byTime bool
		where  func(q *bun.SelectQuery) *bun.SelectQuery
	}{
		{true, func(q *bun.SelectQuery) *bun.SelectQuery { return q.Where("at >= ?", from).Where("at < ?", first) }},
		{true, func(q *bun.SelectQuery) *bun.SelectQuery { return q.Where("at >= ?", end).Where("at < ?", to) }},
		{false, func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("seq > ?", hi).Where("at >= ?", first).Where("at < ?", end)
		}},
	}
	for _, r := range rest {
		if err := days.count(ctx, db, bucketExpr(db, false), r.byTime, r.where); err != nil {
			return nil, err
		}
	}
	return days.overview(from, to), nil
}
