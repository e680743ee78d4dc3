package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/uptrace/bun"
)

// followUpRow is a registry event holding erasures whose follow-up
// (Options.OnErasure: the subject's key destroyed, its recipients told)
// has not succeeded yet: stored with the event, in its transaction, and
// removed once OnErasure succeeded for each of them. The erasure is in
// force from the commit; what follows it must come too, even if
// OnErasure failed and the caller never retried (an HTTP client that gave
// up), or the instance stopped in between. At is when the event was
// stored, or last claimed by an instance following it up late.
type followUpRow struct {
	bun.BaseModel `bun:"table:policy_erasure_followups"`

	Seq int64     `bun:"seq,pk"`
	At  time.Time `bun:"at,notnull"`
}

// followsUp reports whether the erasures of ch have a follow-up to run,
// and so a row until it ran.
func (l *Live) followsUp(ch agreements.Change) bool {
	return l.opts.OnErasure != nil && len(ch.Erasures) > 0
}

// storeFollowUp records that event seq has erasures to follow up.
func storeFollowUp(ctx context.Context, tx bun.Tx, seq int64, now time.Time) error {
	if _, err := tx.NewInsert().Model(&followUpRow{Seq: seq, At: now.UTC()}).Exec(ctx); err != nil {
		return fmt.Errorf("policy: store erasure follow-up of event %d: %w", seq, err)
	}
	return nil
}

// followedUp removes the row of event seq, whose change is ch, once the
// follow-up of its erasures succeeded. A row that stays (the store
// failed) is followed up again later, which is safe.
func (l *Live) followedUp(ctx context.Context, seq int64, ch agreements.Change) {
	if !l.followsUp(ch) {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := l.opts.Store.db.NewDelete().Model((*followUpRow)(nil)).Where("seq = ?", seq).Exec(dctx); err != nil {
		l.log.Warn("clear erasure follow-up; it runs again later", "seq", seq, "err", err)
	}
}

// followedUpSubjects removes the rows of the events whose erasures are
// all of subjects ch followed up (with the times in force, as a late
// follow-up would), once that succeeded: an erasure in force already,
// sent again after a failed follow-up.
func (l *Live) followedUpSubjects(ctx context.Context, ch agreements.Change) {
	if !l.followsUp(ch) {
		return
	}
	done := map[string]bool{}
	for _, e := range ch.Erasures {
		done[e.Subject] = true
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	db := l.opts.Store.db
	var rows []eventRow
	err := db.NewSelect().Model(&rows).Where("kind = ?", string(KindChange)).
		Where("seq IN (?)", db.NewSelect().Model((*followUpRow)(nil)).Column("seq")).Order("seq").Scan(dctx)
	var seqs []int64
	for _, r := range rows {
		ev, err := r.event()
		if err != nil {
			continue // left for the late follow-up, which reports it
		}
		all := true
		for _, e := range ev.Change.Erasures {
			all = all && done[e.Subject]
		}
		if all {
			seqs = append(seqs, ev.Seq)
		}
	}
	if err == nil && len(seqs) > 0 {
		_, err = db.NewDelete().Model((*followUpRow)(nil)).Where("seq IN (?)", bun.In(seqs)).Exec(dctx)
	}
	if err != nil {
		l.log.Warn("clear erasure follow-ups; they run again later", "err", err)
	}
}

// followUpLate runs the follow-up of the erasures whose rows are older
// than pendingGrace: their writer failed to and was not retried, or
// stopped. As reconcile does for audit entries, an instance first claims
// a row by moving its time to now (only one claim of a reading holds), so
// that another does not run it too for a grace period, and runs
// OnErasure outside any transaction of the store, which on SQLite would
// hold the write lock what OnErasure stores needs. A follow-up that fails
// is left for a later round; the log names its event, never a subject.
func (l *Live) followUpLate(ctx context.Context) error {
	if l.opts.OnErasure == nil {
		return nil
	}
	db := l.opts.Store.db
	var due []followUpRow
	if err := db.NewSelect().Model(&due).Where("at < ?", l.opts.Now().UTC().Add(-time.Duration(pendingGrace.Load()))).
		Order("seq").Limit(100).Scan(ctx); err != nil {
		return fmt.Errorf("policy: read erasure follow-ups: %w", err)
	}
	var errs []error
	for _, f := range due {
		if ctx.Err() != nil {
			break // the rows not claimed are due for the next round
		}
		res, err := db.NewUpdate().Model((*followUpRow)(nil)).Set("at = ?", l.opts.Now().UTC()).
			Where("seq = ?", f.Seq).Where("at = ?", f.At).Exec(ctx)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("policy: claim erasure follow-up: %w", err))...)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			continue // claimed, or followed up, meanwhile
		}
		evs, err := l.opts.Store.events(ctx, db, f.Seq-1, f.Seq)
		if err == nil && (len(evs) != 1 || evs[0].Change == nil) {
			err = fmt.Errorf("policy: no stored change: %w", ErrCorruptEvent)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: erasure follow-up of event %d: %w", f.Seq, err))
			continue
		}
		if err := l.followErasures(ctx, l.erasuresInForce(*evs[0].Change)); err != nil {
			l.log.Warn("erasure follow-up failed; tried again later", "seq", f.Seq, "err", err)
			continue
		}
		if _, err := db.NewDelete().Model((*followUpRow)(nil)).Where("seq = ?", f.Seq).Exec(ctx); err != nil {
			errs = append(errs, fmt.Errorf("policy: clear erasure follow-up of event %d: %w", f.Seq, err))
			continue
		}
		l.log.Warn("erasure followed up late", "seq", f.Seq)
	}
	return errors.Join(errs...)
}
