package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Final reports whether e is a final outcome of its request: an entry that
// ends the request's story, of which the log holds at most one per request
// id. The final outcomes are
//
//   - delivered;
//   - rejected;
//   - decided with decision "deny";
//   - delivery_failed, unless one of its reasons ends in "transient" (a
//     failure that is retried, so another outcome follows).
//
// decided "allow", received, erasure_notified, registry events and every
// entry without a request id are not final. Append refuses a final outcome
// for a request that already has one with ErrDuplicateOutcome, and a
// decision to allow it too (opensDelivery).
func (e *Entry) Final() bool {
	return e.RequestID != "" && isFinal(e.Event, e.Decision, e.Reasons)
}

// opensDelivery reports whether e is a decision to allow its request, the
// entry that must be durable before the request is delivered. Append refuses
// it, as it refuses a second final outcome, once the request has a final
// outcome: a request sent again under its id after the transfer stream's
// de-duplication window forgot the id would otherwise be decided and
// delivered a second time, and its second delivered entry refused, so that
// a delivery would go unrecorded (perhaps under another agreement, if the
// registry changed in between).
func (e *Entry) opensDelivery() bool {
	return e.RequestID != "" && e.Event == EventDecided && e.Decision == "allow"
}

func isFinal(ev Event, decision string, reasons []string) bool {
	switch ev {
	case EventDelivered, EventRejected:
		return true
	case EventDecided:
		return decision == "deny"
	case EventDeliveryFailed:
		return !slices.ContainsFunc(reasons, func(r string) bool { return strings.HasSuffix(r, "transient") })
	}
	return false
}

// refusal is a final outcome taken out of a batch: the error its caller
// gets and, for a duplicate within the batch, the entry that won (whose
// sequence is known once the batch is chained).
type refusal struct {
	err    *DuplicateOutcomeError
	winner *pending
}

// dedupe splits batch into the entries to chain and the final outcomes and
// decisions to allow (opensDelivery) refused because their request already
// has a final outcome: in the store, looked up
// through db in one query on the request_id index, or earlier in the batch.
// db must see every entry chained before the place the batch will take (the
// writer's transaction holding the head lock, or a read made after this
// writer's own last commit when a compare-and-set on the head follows). It
// clears the chain fields of every entry of batch.
func dedupe(ctx context.Context, db bun.IDB, batch []*pending) ([]*pending, map[*pending]refusal, error) {
	var ids []string
	for _, p := range batch {
		if p.final || p.opens {
			ids = append(ids, p.e.RequestID)
		}
	}
	var recorded map[string]recordedFinal
	if len(ids) > 0 {
		var err error
		if recorded, err = recordedFinals(ctx, db, ids); err != nil {
			return nil, nil, err
		}
	}
	keep, refused := dedupeAgainst(batch, recorded)
	return keep, refused, nil
}

// dedupeAgainst splits batch as dedupe does, given the final outcomes
// recorded for its requests (nil: none known). It clears the chain fields
// of every entry of batch.
func dedupeAgainst(batch []*pending, recorded map[string]recordedFinal) ([]*pending, map[*pending]refusal) {
	for _, p := range batch {
		p.e.Sequence, p.e.PrevHash, p.e.Hash = 0, "", ""
	}
	keep := make([]*pending, 0, len(batch))
	refused := map[*pending]refusal{}
	winners := make(map[string]*pending)
	for _, p := range batch {
		if !p.final && !p.opens {
			keep = append(keep, p)
			continue
		}
		id := p.e.RequestID
		if r, ok := recorded[id]; ok {
			refused[p] = refusal{err: &DuplicateOutcomeError{Event: p.e.Event, Recorded: r.event, Sequence: r.seq}}
			continue
		}
		if w, ok := winners[id]; ok {
			refused[p] = refusal{err: &DuplicateOutcomeError{Event: p.e.Event, Recorded: w.e.Event}, winner: w}
			continue
		}
		if p.final {
			winners[id] = p
		}
		keep = append(keep, p)
	}
	return keep, refused
}

type recordedFinal struct {
	event Event
	seq   int64
}

// recordedFinals returns the first final outcome stored for each of ids
// that has one. The look-up is one range scan of the request id index per
// id (its entries' event and decision are read from the table, or from the
// index alone where a log without the unique index of final outcomes keeps
// the index widened with them: migration 20261130000001); the reasons of a
// delivery_failed, which tell a retried failure from a final one, are read
// by sequence in a second query, which only requests with a failed delivery
// need. The query filters on request id only: a request has a handful of
// entries, and a filter on event would let SQLite prefer the event index, a
// scan of most of the table, once the list of ids is long.
// pgRecordedFinals looks up each request id of the array on the request
// index, one index range scan per id, whatever the planner knows of the
// table. The plain "request_id IN (...)" lets PostgreSQL plan from its
// statistics of audit_entries, and before the table's first ANALYZE (a new
// log, or one that grew fast since) it has none: it then guesses that a few
// hundred ids match most of the table and reads all of it, in every batch
// with a final outcome. Measured on a log that grew to 375,000 entries in a
// minute: 570 ms a look-up, and appends down from 4,300 to 2,250 transfers/s
// as the log grew. The OFFSET 0 keeps the per-id subquery from being merged
// into a join the planner could answer with that same full scan. Only the
// entries that can be final come back: a batch of deliveries would otherwise
// read back the decision to allow of each of its requests, hundreds of rows
// that the writer would scan and drop.
const pgRecordedFinals = `SELECT e.seq, e.event, e.request_id, e.decision
FROM unnest(?::text[]) AS r(id)
CROSS JOIN LATERAL (SELECT seq, event, request_id, decision FROM audit_entries WHERE request_id = r.id
  AND ` + pgMaybeFinal + ` OFFSET 0) AS e`

// pgMaybeFinal holds for the entries that can be final outcomes (Final, less
// the reasons of a delivery_failed, which decide whether it is final and are
// not in the request index): the condition of both look-ups of recorded
// finals, pgRecordedFinals and the one in pgBatchInsert.
const pgMaybeFinal = `(event IN ('delivered', 'rejected', 'delivery_failed') OR event = 'decided' AND decision = 'deny')`

func recordedFinals(ctx context.Context, db bun.IDB, ids []string) (map[string]recordedFinal, error) {
	var rows []entryRow
	var err error
	if isPostgres(db) {
		err = db.NewRaw(pgRecordedFinals, pgdialect.Array(ids)).Scan(ctx, &rows)
	} else {
		err = db.NewSelect().Model(&rows).Column("seq", "event", "request_id", "decision").
			Where("request_id IN (?)", bun.In(ids)).Scan(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("look up final outcomes: %w", err)
	}
	var failed []int64
	for _, r := range rows {
		if Event(r.Event) == EventDeliveryFailed {
			failed = append(failed, r.Seq)
		}
	}
	reasons := map[int64][]string{}
	if len(failed) > 0 {
		var fr []entryRow
		if err := db.NewSelect().Model(&fr).Column("seq", "reasons").Where("seq IN (?)", bun.In(failed)).Scan(ctx); err != nil {
			return nil, fmt.Errorf("look up failed deliveries: %w", err)
		}
		for _, r := range fr {
			var rs []string
			if err := json.Unmarshal([]byte(r.Reasons), &rs); err != nil {
				return nil, fmt.Errorf("entry %d reasons: %w", r.Seq, err)
			}
			reasons[r.Seq] = rs
		}
	}
	out := make(map[string]recordedFinal, len(rows))
	for _, r := range rows {
		if !isFinal(Event(r.Event), r.Decision, reasons[r.Seq]) {
			continue
		}
		if cur, ok := out[r.RequestID]; !ok || r.Seq < cur.seq {
			out[r.RequestID] = recordedFinal{event: Event(r.Event), seq: r.Seq}
		}
	}
	return out, nil
}

// finalOutcomesChunk bounds the request ids of one query of FinalOutcomes
// (SQLite binds each as a parameter).
const finalOutcomesChunk = 1000

// FinalOutcomes returns the final outcome (Entry.Final) the log records for
// each of ids that has one, keyed by request id; the others are absent.
// It costs one query per 1,000 ids, one probe of the request id index per
// id, and one more query to read the entries of the outcomes found, where
// a look-up of each id by Query would cost a round trip per id. Entries
// removed by retention (Archive) are not found.
func (l *Log) FinalOutcomes(ctx context.Context, ids []string) (map[string]Entry, error) {
	out := map[string]Entry{}
	var seqs []int64
	for chunk := range slices.Chunk(ids, finalOutcomesChunk) {
		found, err := recordedFinals(ctx, l.db, chunk)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		for _, f := range found {
			seqs = append(seqs, f.seq)
		}
	}
	for chunk := range slices.Chunk(seqs, finalOutcomesChunk) {
		var rows []entryRow
		if err := l.db.NewSelect().Model(&rows).Where("seq IN (?)", bun.In(chunk)).Scan(ctx); err != nil {
			return nil, fmt.Errorf("audit: read final outcomes: %w", err)
		}
		for i := range rows {
			e, err := rows[i].entry()
			if err != nil {
				return nil, err
			}
			out[e.RequestID] = e
		}
	}
	return out, nil
}
