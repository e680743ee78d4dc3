package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/uptrace/bun"
)

// pendingRow is a registry event whose audit entries are not all written:
// stored with the event, in its transaction, and removed once the last of
// them is appended. Done is how many were appended when the writing
// failed (0 if the instance stopped, or an append that timed out was
// written after all: those entries are then written twice, a record kept
// twice rather than lost). The event is in force from its commit, and its record must
// follow even if the audit log failed for longer than the writer retried,
// or the instance stopped in between: a retried change finds the change in
// force and writes nothing (an erasure in force already, an apply of the
// base in force).
type pendingRow struct {
	bun.BaseModel `bun:"table:policy_audit_pending"`

	Seq  int64     `bun:"seq,pk"`
	At   time.Time `bun:"at,notnull"`
	Done int       `bun:"done,notnull"`
}

// pendingGrace is how long an event's own writer has to audit it before
// another look (reconcile) writes what is missing, longer than appendAll
// retries, and to follow up its erasures before another look
// (followUpLate) runs OnErasure again.
var pendingGrace atomic.Int64

func init() { pendingGrace.Store(int64(time.Minute)) }

// setDone records that the first done entries of event seq are appended;
// with all of them (done < 0) the event is no longer pending.
func (l *Live) setDone(ctx context.Context, db bun.IDB, seq int64, done int) error {
	var err error
	if done < 0 {
		_, err = db.NewDelete().Model((*pendingRow)(nil)).Where("seq = ?", seq).Exec(ctx)
	} else {
		_, err = db.NewUpdate().Model((*pendingRow)(nil)).Set("done = ?", done).Where("seq = ?", seq).Exec(ctx)
	}
	return err
}

// reconcile writes the audit entries of the events pending for longer than
// pendingGrace, from where their writing stopped. An instance first claims
// an event by moving its time to now (only one claim of a reading holds),
// so that another does not write its entries too for a grace period; the
// entries are appended outside any transaction of the store, which on
// SQLite would hold the write lock the audit log needs.
func (l *Live) reconcile(ctx context.Context) error {
	db := l.opts.Store.db
	var due []pendingRow
	if err := db.NewSelect().Model(&due).Where("at < ?", l.opts.Now().UTC().Add(-time.Duration(pendingGrace.Load()))).
		Order("seq").Limit(100).Scan(ctx); err != nil {
		return fmt.Errorf("policy: read pending audit: %w", err)
	}
	for _, p := range due {
		res, err := db.NewUpdate().Model((*pendingRow)(nil)).Set("at = ?", l.opts.Now().UTC()).
			Where("seq = ?", p.Seq).Where("at = ?", p.At).Exec(ctx)
		if err != nil {
			return fmt.Errorf("policy: claim pending audit: %w", err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			continue // claimed, or written, meanwhile
		}
		evs, err := l.opts.Store.events(ctx, db, p.Seq-1, p.Seq)
		if err != nil || len(evs) != 1 {
			return errors.Join(err, fmt.Errorf("policy: pending audit of event %d: no such event", p.Seq))
		}
		es, err := l.entriesOf(ctx, db, evs[0])
		if err != nil {
			return err
		}
		for i := p.Done; i < len(es); i++ {
			if _, err := l.opts.Audit.Append(ctx, es[i]); err != nil {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				return errors.Join(fmt.Errorf("policy: audit registry event %d: %w", p.Seq, err), l.setDone(dctx, db, p.Seq, i))
			}
		}
		if err := l.setDone(ctx, db, p.Seq, -1); err != nil {
			return fmt.Errorf("policy: clear pending audit: %w", err)
		}
		l.log.Warn("registry event audited late", "seq", p.Seq)
	}
	return nil
}

// entriesOf returns the audit entries of a stored event, as its writer
// made them: for an apply, the agreement versions it stored first are
// those stored with its base, if it was the first apply of that base.
func (l *Live) entriesOf(ctx context.Context, db bun.IDB, ev Event) ([]*audit.Entry, error) {
	if ev.Kind != KindApply {
		return changeEntries(ev), nil
	}
	n, err := db.NewSelect().Model((*eventRow)(nil)).Where("kind = ?", string(KindApply)).Where("base = ?", ev.Base).
		Where("seq < ?", ev.Seq).Count(ctx)
	if err != nil || n > 0 {
		return applyEntries(ev, nil), err
	}
	var rows []agreementRow
	if err := db.NewSelect().Model(&rows).Column("id", "version").Where("base_version = ?", ev.Base).Scan(ctx); err != nil {
		return nil, fmt.Errorf("policy: read agreements of base %s: %w", ev.Base, err)
	}
	c, err := l.opts.Store.base(ctx, db, ev.Base)
	if err != nil {
		return nil, err
	}
	added := slices.DeleteFunc(c.Agreements, func(a agreements.Agreement) bool {
		return !slices.ContainsFunc(rows, func(r agreementRow) bool { return r.ID == a.ID && r.Version == a.Version })
	})
	return applyEntries(ev, added), nil
}
