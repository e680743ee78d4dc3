package policy

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/sqlschema"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// baseRow is one applied registry content, by version.
type baseRow struct {
	bun.BaseModel `bun:"table:policy_bases"`

	Version   string    `bun:"version,pk"`
	Content   string    `bun:"content,notnull"`
	AppliedAt time.Time `bun:"applied_at,notnull"`
}

// agreementRow is one version of one agreement, kept for the audit.
type agreementRow struct {
	bun.BaseModel `bun:"table:policy_agreements"`

	ID          string    `bun:"id,pk"`
	Version     int       `bun:"version,pk"`
	Content     string    `bun:"content,notnull"`
	BaseVersion string    `bun:"base_version,notnull"`
	AppliedAt   time.Time `bun:"applied_at,notnull"`
}

// eventRow is one numbered registry event: an apply (Base set) or a
// run-time change (Change set). Version is the registry version in force
// after it.
type eventRow struct {
	bun.BaseModel `bun:"table:policy_events"`

	Seq     int64     `bun:"seq,pk"`
	Kind    string    `bun:"kind,notnull"`
	Base    string    `bun:"base,notnull"`
	Change  string    `bun:"change,notnull"`
	Version string    `bun:"version,notnull"`
	At      time.Time `bun:"at,notnull"`
}

// headRow is the single row (id 1) naming the latest event. Its row lock
// serialises writers across instances.
type headRow struct {
	bun.BaseModel `bun:"table:policy_head"`

	ID      int64  `bun:"id,pk"`
	Seq     int64  `bun:"seq,notnull"`
	Version string `bun:"version,notnull"`
}

// requestRow is the rights message a run-time change was recorded for:
// its caller's source and request id (Idempotency-Key, Nats-Msg-Id), one
// row per pair (the primary key), and the event that recorded it, so that
// the same message sent again (a retry, a redelivery) is answered with the
// first one's receipt rather than recorded again. Reason is that
// receipt's reason, if it had one; Digest, the message's (requestDigest),
// tells the same message sent again from another sent under the same id.
type requestRow struct {
	bun.BaseModel `bun:"table:policy_requests"`

	Source    string    `bun:"source,pk"`
	RequestID string    `bun:"request_id,pk"`
	Digest    string    `bun:"digest,notnull"`
	Seq       int64     `bun:"seq,notnull"`
	Reason    string    `bun:"reason,notnull"`
	At        time.Time `bun:"at,notnull"`
}

// Store is the registry's SQL store. It is safe for concurrent use, also by
// several instances sharing one database.
type Store struct {
	db *bun.DB
}

// OpenStore migrates the policy schema of db and returns its Store. The
// caller owns db and closes it after the Store is no longer used.
func OpenStore(ctx context.Context, db *bun.DB) (*Store, error) {
	if err := migrateSchema(ctx, db); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

func migrateSchema(ctx context.Context, db *bun.DB) error {
	return sqlschema.Migrate(ctx, db, "policy", registerSchemaV1, registerSnapshots, registerSnapshotParts, registerAuditPending, registerRequests,
		registerErasureFollowUps)
}

// Head returns the sequence number and registry version of the latest
// event (0 and "" when nothing was ever applied).
func (s *Store) Head(ctx context.Context) (int64, string, error) {
	var h headRow
	if err := s.db.NewSelect().Model(&h).Where("id = 1").Scan(ctx); err != nil {
		return 0, "", fmt.Errorf("policy: read head: %w", err)
	}
	return h.Seq, h.Version, nil
}

// AgreementVersions returns every stored version of the agreement id,
// oldest first.
func (s *Store) AgreementVersions(ctx context.Context, id string) ([]agreements.Agreement, error) {
	var rows []agreementRow
	if err := s.db.NewSelect().Model(&rows).Where("id = ?", id).Order("version").Scan(ctx); err != nil {
		return nil, fmt.Errorf("policy: read agreement versions: %w", err)
	}
	out := make([]agreements.Agreement, 0, len(rows))
	for _, r := range rows {
		var a agreements.Agreement
		if err := json.Unmarshal([]byte(r.Content), &a); err != nil {
			return nil, fmt.Errorf("policy: decode agreement %s@%d: %w", r.ID, r.Version, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// InForce returns the registry the stored events put in force, as a live
// registry starting on the store would (the latest applied version with
// every run-time change since carried over it, from the latest snapshot
// that holds together), and the sequence of the last event; nil and 0 when
// nothing was ever applied.
func (s *Store) InForce(ctx context.Context) (*agreements.Registry, int64, error) {
	st, _, err := s.resume(ctx, s.db, 0)
	switch {
	case errors.Is(err, errBadSnapshot) || (err == nil && st == nil):
		st = &state{} // replay every event
	case err != nil:
		return nil, 0, err
	}
	evs, err := s.events(ctx, s.db, st.seq, 0)
	if err != nil {
		return nil, 0, err
	}
	err = s.replay(ctx, s.db, st, evs, func(ns *state, _ []Event) { st = ns })
	if err != nil {
		return nil, 0, err
	}
	return st.reg, st.seq, nil
}

// replay derives the states after evs, the stored events after st, and
// passes each one put in force to put with the events it took: a run of
// consecutive run-time changes at once (state.run), every other event, and
// a run that does not check out, one by one.
func (s *Store) replay(ctx context.Context, db bun.IDB, st *state, evs []Event, put func(*state, []Event)) error {
	for i := 0; i < len(evs); {
		j := i
		for j < len(evs) && evs[j].Kind == KindChange {
			j++
		}
		if j-i > 1 {
			if ns, ok := st.run(evs[i:j]); ok {
				put(ns, evs[i:j])
				st, i = ns, j
				continue
			}
		}
		for j = max(j, i+1); i < j; i++ {
			ns, err := s.step(ctx, db, st, evs[i])
			if err != nil {
				return err
			}
			put(ns, evs[i:i+1])
			st = ns
		}
	}
	return nil
}

// step returns the state after ev, the stored event after st, checked
// against the version it stored.
func (s *Store) step(ctx context.Context, db bun.IDB, st *state, ev Event) (*state, error) {
	ns, err := st.next(ev, s.source(ctx, db))
	if err != nil {
		return nil, err
	}
	if got := ns.reg.Version(); got != ev.Version {
		return nil, fmt.Errorf("policy: event %d derives %s, stored %s: %w", ev.Seq, got, ev.Version, ErrCorruptEvent)
	}
	return ns, nil
}

// source reads base contents and run-time changes from db.
func (s *Store) source(ctx context.Context, db bun.IDB) source {
	return source{
		content: func(v string) (agreements.Content, error) { return s.base(ctx, db, v) },
		changes: func(before int64) ([]Event, error) { return s.changes(ctx, db, before) },
	}
}

// changes returns the run-time changes stored before event seq, oldest
// first.
func (s *Store) changes(ctx context.Context, db bun.IDB, before int64) ([]Event, error) {
	var rows []eventRow
	err := db.NewSelect().Model(&rows).Where("kind = ?", string(KindChange)).Where("seq < ?", before).Order("seq").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: read run-time changes: %w", err)
	}
	out := make([]Event, len(rows))
	for i := range rows {
		if out[i], err = rows[i].event(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// events returns the events after seq (up to and including upTo, 0: all),
// in order.
func (s *Store) events(ctx context.Context, db bun.IDB, after, upTo int64) ([]Event, error) {
	var rows []eventRow
	q := db.NewSelect().Model(&rows).Where("seq > ?", after).Order("seq")
	if upTo > 0 {
		q = q.Where("seq <= ?", upTo)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("policy: read events: %w", err)
	}
	out := make([]Event, len(rows))
	for i := range rows {
		ev, err := rows[i].event()
		if err != nil {
			return nil, err
		}
		out[i] = ev
	}
	return out, nil
}

// base returns the stored content of a base version.
func (s *Store) base(ctx context.Context, db bun.IDB, version string) (agreements.Content, error) {
	var row baseRow
	if err := db.NewSelect().Model(&row).Where("version = ?", version).Scan(ctx); err != nil {
		return agreements.Content{}, fmt.Errorf("policy: read base %s: %w", version, err)
	}
	var c agreements.Content
	if err := json.Unmarshal([]byte(row.Content), &c); err != nil {
		return agreements.Content{}, fmt.Errorf("policy: decode base %s: %w", version, err)
	}
	return c, nil
}

// locked runs fn in a transaction holding the head row's lock and passes it
// the head. On SQLite the transaction takes the write lock when it begins.
func (s *Store) locked(ctx context.Context, fn func(ctx context.Context, tx bun.Tx, head *headRow) error) error {
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var h headRow
		q := tx.NewSelect().Model(&h).Where("id = 1")
		if tx.Dialect().Name() == dialect.PG {
			q = q.For("UPDATE")
		}
		if err := q.Scan(ctx); err != nil {
			return fmt.Errorf("policy: lock head: %w", err)
		}
		return fn(ctx, tx, &h)
	})
}

// appendEvent stores ev as the event after head and moves the head.
func appendEvent(ctx context.Context, tx bun.Tx, head *headRow, ev *Event) error {
	row, err := ev.row()
	if err != nil {
		return err
	}
	if _, err := tx.NewInsert().Model(row).Exec(ctx); err != nil {
		return fmt.Errorf("policy: store event %d: %w", ev.Seq, err)
	}
	if _, err := tx.NewInsert().Model(&pendingRow{Seq: ev.Seq, At: ev.At}).Exec(ctx); err != nil {
		return fmt.Errorf("policy: store event %d: %w", ev.Seq, err)
	}
	head.Seq, head.Version = ev.Seq, ev.Version
	if _, err := tx.NewUpdate().Model(head).WherePK().Exec(ctx); err != nil {
		return fmt.Errorf("policy: move head: %w", err)
	}
	return nil
}

// request returns the event that recorded req and its receipt's reason;
// ok is false when req was not recorded.
func (s *Store) request(ctx context.Context, db bun.IDB, req request) (ev Event, reason string, ok bool, err error) {
	var row requestRow
	err = db.NewSelect().Model(&row).Where("source = ?", req.source).Where("request_id = ?", req.id).Scan(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Event{}, "", false, nil
	case err != nil:
		return Event{}, "", false, fmt.Errorf("policy: read request: %w", err)
	case row.Digest != req.digest:
		// Another message under an id recorded before (two callers of one
		// source choosing the same key, a key used on both routes): it is
		// neither recorded nor answered with the other's receipt.
		return Event{}, "", false, invalid("id", "was sent before with another message; send this one under an id of its own")
	}
	evs, err := s.events(ctx, db, row.Seq-1, row.Seq)
	if err != nil {
		return Event{}, "", false, err
	}
	if len(evs) != 1 || evs[0].Kind != KindChange {
		return Event{}, "", false, fmt.Errorf("policy: request recorded as event %d, which is not a stored change: %w", row.Seq, ErrCorruptEvent)
	}
	return evs[0], row.Reason, true, nil
}

// storeRequest records that event seq recorded req.
func storeRequest(ctx context.Context, tx bun.Tx, req request, seq int64, reason string, now time.Time) error {
	row := &requestRow{Source: req.source, RequestID: req.id, Digest: req.digest, Seq: seq, Reason: reason, At: now.UTC()}
	if _, err := tx.NewInsert().Model(row).Exec(ctx); err != nil {
		return fmt.Errorf("policy: store request of event %d: %w", seq, err)
	}
	return nil
}

// Events returns up to limit stored registry events after the event
// numbered after, oldest first (limit 0: all), for listing the registry's
// versions.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
	var upTo int64
	if limit > 0 {
		upTo = after + int64(limit) // events are numbered without gaps
	}
	return s.events(ctx, s.db, after, upTo)
}
