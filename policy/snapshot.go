package policy

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/uptrace/bun"
)

// A starting instance derives the registry in force from the stored
// events: the latest apply, with every run-time change since carried over
// it. Replayed one by one, a change cost about what it cost when it was
// made, so a store that gathered a million consents took minutes to start
// from; replay takes the changes between two applies at once now
// (Store.replay), but still decodes, validates and hashes every applied
// content and carries every change over it.
//
// A snapshot is the registry in force after one event, stored with the
// version that event recorded; a starting instance reads the latest one
// and replays only the events after it. The run-time changes before it are
// not read: the next apply reads every run-time change from the store to
// carry it over its new base (state.next).
//
// Every instance stores one when it has put Options.SnapshotEvery events
// in force since the last it stored or read (by default 10,000, or a tenth
// of the registry's consents and erasures when that is more, so that a
// large registry is written out in proportion to its changes, not on every
// ten thousandth), off the path of the change, and keeps only the newest.
// A snapshot that does not hold together (its digest, its content, or a
// version other than its event's) is passed over with a warning and the
// events are replayed from the first, as before snapshots.
//
// A snapshot's content is stored in parts of snapshotPart bytes
// (policy_snapshot_parts), so that no row or statement nears PostgreSQL's
// 1 GB limit on a field and a query: one row held about 140 bytes per
// consent, so a registry of some seven million consents could not be
// stored in one. The digest in the snapshot's own row covers the parts
// joined in order, so a part missing, added, reordered or edited makes the
// snapshot pass over. A snapshot stored before parts holds its content in
// its own row.

// Beside the registry's content a snapshot holds the withdrawals the
// run-time changes recorded (agreements.Registry.Withdrawals), which the
// content does not list and which withdraw the consents recorded after
// them. A snapshot stored before it held them is passed over.

// DefaultSnapshotEvery is the default of Options.SnapshotEvery.
const DefaultSnapshotEvery = 10_000

// snapshotRow is the registry in force after event Seq.
type snapshotRow struct {
	bun.BaseModel `bun:"table:policy_snapshots"`

	Seq     int64  `bun:"seq,pk"`
	Base    string `bun:"base,notnull"`
	Version string `bun:"version,notnull"`
	// Content is empty: the content is in the snapshot's parts. It holds
	// the content of a snapshot stored before parts.
	Content string `bun:"content,notnull"`
	// Digest is the SHA-256 of the content, hex: a part cut short, edited,
	// missing or added is passed over.
	Digest string    `bun:"digest,notnull"`
	At     time.Time `bun:"at,notnull"`
}

// snapshotPartRow is one part of a snapshot's content, numbered from 0.
type snapshotPartRow struct {
	bun.BaseModel `bun:"table:policy_snapshot_parts"`

	Seq  int64  `bun:"seq,pk"`
	Part int    `bun:"part,pk"`
	Data []byte `bun:"data,notnull"`
}

// snapshotBody is what a snapshot's content is the JSON of: the
// registry's content with its withdrawals beside it (a key of its own, so
// that a snapshot stored before them, without the key, is told apart).
type snapshotBody struct {
	agreements.Content
	Withdrawals *[]agreements.Withdrawal `json:"run_time_withdrawals"`
}

// snapshotPart is the size in bytes of a snapshot's parts (16 MiB; tests
// set it smaller): a part is sent as hex in its statement, twice its size.
var snapshotPart atomic.Int64

func init() { snapshotPart.Store(16 << 20) }

// digest is a snapshot's Digest of its content.
func digest(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// errBadSnapshot: a stored snapshot does not hold together.
var errBadSnapshot = errors.New("policy: snapshot unusable")

// saveSnapshot stores st as the snapshot of its event, its content in
// parts, and removes the older ones. A snapshot of that event stored
// already is kept.
func (s *Store) saveSnapshot(ctx context.Context, st *state, now time.Time) (int, error) {
	ws := st.reg.Withdrawals()
	if ws == nil {
		ws = []agreements.Withdrawal{}
	}
	data, err := json.Marshal(snapshotBody{Content: st.reg.Content(), Withdrawals: &ws})
	if err != nil {
		return 0, fmt.Errorf("policy: encode snapshot %d: %w", st.seq, err)
	}
	row := &snapshotRow{Seq: st.seq, Base: st.base, Version: st.reg.Version(), Digest: digest(data), At: now.UTC()}
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewInsert().Model(row).On("CONFLICT DO NOTHING").Exec(ctx)
		if err != nil {
			return fmt.Errorf("policy: store snapshot %d: %w", st.seq, err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			size := int(snapshotPart.Load())
			for part, rest := 0, data; len(rest) > 0; part++ {
				chunk := rest[:min(len(rest), size)]
				rest = rest[len(chunk):]
				if _, err := tx.NewInsert().Model(&snapshotPartRow{Seq: st.seq, Part: part, Data: chunk}).Exec(ctx); err != nil {
					return fmt.Errorf("policy: store snapshot %d part %d: %w", st.seq, part, err)
				}
			}
		}
		if _, err := tx.NewDelete().Model((*snapshotPartRow)(nil)).Where("seq < ?", st.seq).Exec(ctx); err != nil {
			return fmt.Errorf("policy: remove older snapshots: %w", err)
		}
		if _, err := tx.NewDelete().Model((*snapshotRow)(nil)).Where("seq < ?", st.seq).Exec(ctx); err != nil {
			return fmt.Errorf("policy: remove older snapshots: %w", err)
		}
		return nil
	})
	return len(data), err
}

// snapshotContent returns the content of snapshot row: its parts joined
// in order, or the content of its own row when it was stored before parts.
func snapshotContent(ctx context.Context, db bun.IDB, row *snapshotRow) ([]byte, error) {
	if row.Content != "" {
		return []byte(row.Content), nil
	}
	var parts []snapshotPartRow
	if err := db.NewSelect().Model(&parts).Where("seq = ?", row.Seq).Order("part").Scan(ctx); err != nil {
		return nil, fmt.Errorf("policy: read snapshot %d: %w", row.Seq, err)
	}
	size := 0
	for i := range parts {
		size += len(parts[i].Data)
	}
	data := make([]byte, 0, size)
	for i := range parts {
		data = append(data, parts[i].Data...)
		parts[i].Data = nil
	}
	return data, nil
}

// snapshotSeq returns the event of the latest stored snapshot, 0 when
// there is none.
func (s *Store) snapshotSeq(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.db.NewSelect().Model((*snapshotRow)(nil)).ColumnExpr("COALESCE(MAX(seq), 0)").Scan(ctx, &seq); err != nil {
		return 0, fmt.Errorf("policy: read snapshot: %w", err)
	}
	return seq, nil
}

// resume returns the state of the latest snapshot at or before event upTo
// (0: the latest of all) and that event; a nil state when there is none.
// A snapshot that does not hold together is errBadSnapshot; the caller
// replays the events instead.
func (s *Store) resume(ctx context.Context, db bun.IDB, upTo int64) (*state, Event, error) {
	var row snapshotRow
	q := db.NewSelect().Model(&row).Order("seq DESC").Limit(1)
	if upTo > 0 {
		q = q.Where("seq <= ?", upTo)
	}
	switch err := q.Scan(ctx); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, Event{}, nil
	case err != nil:
		return nil, Event{}, fmt.Errorf("policy: read snapshot: %w", err)
	}
	bad := func(why string) (*state, Event, error) {
		return nil, Event{}, fmt.Errorf("policy: snapshot %d: %s: %w", row.Seq, why, errBadSnapshot)
	}
	content, err := snapshotContent(ctx, db, &row)
	if err != nil {
		return nil, Event{}, err
	}
	if digest(content) != row.Digest {
		return bad("digest does not match its content")
	}
	evs, err := s.events(ctx, db, row.Seq-1, row.Seq)
	if err != nil {
		return nil, Event{}, err
	}
	if len(evs) != 1 {
		return bad("its event is not stored")
	}
	ev := evs[0]
	if ev.Version != row.Version {
		return bad("version differs from its event's")
	}
	var body snapshotBody
	if err := json.Unmarshal(content, &body); err != nil {
		return bad("content does not decode")
	}
	if body.Withdrawals == nil {
		return bad("stored without the run-time withdrawals")
	}
	reg, err := agreements.Restore(body.Content, row.Version)
	if err != nil {
		return bad("content is not a valid registry")
	}
	return &state{seq: row.Seq, base: row.Base, reg: reg.RestoreWithdrawals(*body.Withdrawals)}, ev, nil
}

// snapshotDue reports whether an instance that stored or read its last
// snapshot at event last should store one of st: every events later (0:
// DefaultSnapshotEvery, or a tenth of the registry's consents and
// erasures when that is more; negative: never).
func snapshotDue(st *state, last int64, every int) bool {
	if every < 0 || st.reg == nil {
		return false
	}
	if every == 0 {
		every = max(DefaultSnapshotEvery, st.reg.People()/10)
	}
	return st.seq-last >= int64(every)
}
