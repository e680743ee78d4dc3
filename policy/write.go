package policy

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/uptrace/bun"
)

// eventKeys is the KV key pattern of registry events; eventKey names one.
const eventKeys = "event.>"

func eventKey(seq int64) string { return fmt.Sprintf("event.%016d", seq) }

// buildFunc makes the event to store after head (nil: nothing to do). It
// runs in the store transaction holding the head's lock, with l.mu held and
// l.st at the head.
type buildFunc func(ctx context.Context, s *Store, tx bun.Tx, head *headRow) (*Event, error)

// write stores the event build makes, then puts it in force here and
// publishes it. content gives base contents not yet in the store (nil: the
// store's).
func (l *Live) write(ctx context.Context, build buildFunc, content func(string) (agreements.Content, error)) (Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.stop:
		return Event{}, ErrClosed
	default:
	}
	var ns *state
	var ev *Event
	err := l.opts.Store.locked(ctx, func(ctx context.Context, tx bun.Tx, head *headRow) error {
		if head.Seq != l.st.seq {
			if err := l.catchUpLocked(ctx, tx, head.Seq); err != nil {
				return err
			}
		}
		var err error
		if ev, err = build(ctx, l.opts.Store, tx, head); err != nil || ev == nil {
			return err
		}
		ev.At = l.opts.Now().UTC()
		src := l.opts.Store.source(ctx, tx)
		if content != nil {
			stored := src.content
			src.content = func(v string) (agreements.Content, error) {
				if v == ev.Base {
					return content(v)
				}
				return stored(v)
			}
		}
		if ns, err = l.st.next(*ev, src); err != nil {
			if ev.Kind == KindChange {
				return errors.Join(ErrInvalidChange, err)
			}
			return err
		}
		ev.Version = ns.reg.Version()
		return appendEvent(ctx, tx, head, ev)
	})
	if err != nil {
		return Event{}, err
	}
	if ev == nil {
		return Event{Seq: l.st.seq, Kind: KindApply, Base: l.st.base, Version: l.opts.Engine.Registry().Version()}, nil
	}
	l.swap(ns, *ev)
	l.snapshotLater()
	l.publish(ctx, *ev)
	return *ev, nil
}

// swap puts ns, the state after evs, in force; l.mu is held. Each event
// is counted and passed to OnSwap; the last is reported to the other
// instances, which wait for an event or a later one.
func (l *Live) swap(ns *state, evs ...Event) {
	l.st = ns
	l.opts.Engine.Update(ns.reg)
	now := l.opts.Now()
	for _, ev := range evs {
		l.metrics.swapped(ev, now, l.started)
		if l.opts.OnSwap != nil {
			l.opts.OnSwap(ev)
		}
	}
	l.reportApplied(evs[len(evs)-1])
}

// publish puts ev on the bucket: its number, kind and version only, never
// the change (consents and erasures name subjects), which every instance
// reads from the store. A lost publish is not an error of the change, which
// is stored: the other instances' resync reads it from the store.
func (l *Live) publish(ctx context.Context, ev Event) {
	ev.Change, ev.Suspended = nil, nil
	data, err := json.Marshal(ev)
	if err == nil {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, err = l.kv.Put(pctx, eventKey(ev.Seq), data)
		cancel()
	}
	if err != nil {
		l.log.Warn("publish registry event", "seq", ev.Seq, "version", ev.Version, "err", err)
	}
}

// catchUp applies the stored events this instance does not have yet.
func (l *Live) catchUp(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.catchUpLocked(ctx, l.opts.Store.db, 0)
}

// catchUpLocked applies the stored events after l.st.seq up to upTo (0:
// all), starting from the latest snapshot when it has none in force yet;
// l.mu is held.
func (l *Live) catchUpLocked(ctx context.Context, db bun.IDB, upTo int64) error {
	if l.st.seq == 0 {
		if err := l.resume(ctx, db, upTo); err != nil {
			l.caughtUp(err)
			return err
		}
	}
	evs, err := l.opts.Store.events(ctx, db, l.st.seq, upTo)
	if err != nil {
		l.caughtUp(err)
		return err
	}
	err = l.opts.Store.replay(ctx, db, l.st, evs, func(ns *state, took []Event) { l.swap(ns, took...) })
	l.snapshotLater()
	l.caughtUp(err)
	return err
}

// caughtUp sets the catch-up metric, and what Ready answers, after a
// catch-up that ended with err.
func (l *Live) caughtUp(err error) {
	l.lastCatchUp.Store(&err)
	if err != nil {
		l.metrics.catchUpFailing.Set(1)
	} else {
		l.metrics.catchUpFailing.Set(0)
	}
}

// Ready reports whether the instance's last catch-up with the store put
// every stored event in force: the error it ended with, else nil. An
// instance that cannot catch up decides with an older registry than the
// one recorded (a withdrawal, an erasure not yet in force here); a
// readiness probe (/readyz) takes it out of service until it can.
func (l *Live) Ready(context.Context) error {
	if err := l.lastCatchUp.Load(); err != nil && *err != nil {
		return fmt.Errorf("policy: registry catch-up failing: %w", *err)
	}
	return nil
}

// resume puts the latest snapshot at or before upTo in force, if there is
// one that holds together; l.mu is held.
func (l *Live) resume(ctx context.Context, db bun.IDB, upTo int64) error {
	start := time.Now()
	st, ev, err := l.opts.Store.resume(ctx, db, upTo)
	switch {
	case errors.Is(err, errBadSnapshot):
		l.log.Warn("registry snapshot passed over; replaying every event", "err", err)
		return nil
	case err != nil || st == nil:
		return err
	}
	l.snapSeq = st.seq
	l.metrics.snapshot.Set(float64(st.seq))
	l.swap(st, ev)
	l.log.Info("registry resumed from snapshot", "event", st.seq, "registry_version", ev.Version,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// snapshotLater stores the state in force as a snapshot, off the caller's
// path, when one is due and none is being stored; l.mu is held.
func (l *Live) snapshotLater() {
	if l.snapping || !snapshotDue(l.st, l.snapSeq, l.opts.SnapshotEvery) {
		return
	}
	select {
	case <-l.stop:
		return // Stop is waiting for l.wg
	default:
	}
	st := l.st
	l.snapping = true
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// Another instance may have stored one since: each instance counts
		// from the last it stored or read.
		latest, err := l.opts.Store.snapshotSeq(ctx)
		stored, size := false, 0
		if err != nil || snapshotDue(st, latest, l.opts.SnapshotEvery) {
			size, err = l.opts.Store.saveSnapshot(ctx, st, l.opts.Now())
			stored = err == nil
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.snapping = false
		switch {
		case err != nil:
			// Tried again after another interval, not at the next event:
			// a snapshot the store refuses would be encoded anew at every
			// change. Meanwhile a start replays more events.
			l.snapSeq = max(l.snapSeq, st.seq)
			l.metrics.snapshotFailures.Inc()
			l.log.Warn("store registry snapshot", "event", st.seq, "err", err)
			return
		case stored:
			l.snapSeq = max(l.snapSeq, st.seq)
			l.metrics.snapshotBytes.Set(float64(size))
			l.log.Info("registry snapshot stored", "event", st.seq, "bytes", size,
				"took", time.Since(start).Round(time.Millisecond))
		default:
			l.snapSeq = max(l.snapSeq, latest)
		}
		l.metrics.snapshot.Set(float64(l.snapSeq))
		l.snapshotLater() // the events put in force meanwhile may make one due
	}()
}

// storeBase stores reg's content as a base version and every agreement not
// stored yet; it returns the agreements it added. An agreement stored under
// the same id and version with other content is ErrAgreementEdited.
func storeBase(ctx context.Context, tx bun.Tx, reg *agreements.Registry, now time.Time) ([]agreements.Agreement, error) {
	c := reg.Content()
	data, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("policy: encode registry: %w", err)
	}
	base := &baseRow{Version: reg.Version(), Content: string(data), AppliedAt: now.UTC()}
	if _, err := tx.NewInsert().Model(base).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
		return nil, fmt.Errorf("policy: store base: %w", err)
	}
	var added []agreements.Agreement
	var errs []error
	for _, a := range c.Agreements {
		data, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("policy: encode agreement %s: %w", a.ID, err)
		}
		var old agreementRow
		err = tx.NewSelect().Model(&old).Where("id = ? AND version = ?", a.ID, a.Version).Scan(ctx)
		switch {
		case err == nil:
			if old.Content != string(data) {
				errs = append(errs, fmt.Errorf("policy: agreement %s version %d: %w", a.ID, a.Version, ErrAgreementEdited))
			}
			continue
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("policy: read agreement %s: %w", a.ID, err)
		}
		row := &agreementRow{ID: a.ID, Version: a.Version, Content: string(data), BaseVersion: reg.Version(), AppliedAt: now.UTC()}
		if _, err := tx.NewInsert().Model(row).Exec(ctx); err != nil {
			return nil, fmt.Errorf("policy: store agreement %s: %w", a.ID, err)
		}
		added = append(added, a)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return added, nil
}
