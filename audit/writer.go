package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"
)

// writer is the group-commit loop: it takes the first waiting entry, drains
// whatever else is queued up to MaxBatch, and commits them in one
// transaction. While a batch commits, the next one queues up.
func (l *Log) writer() {
	defer l.wg.Done()
	defer close(l.stopCkpt)
	defer func() {
		if l.pgInsert != nil {
			_ = l.pgInsert.Close()
		}
	}()
	batch := make([]*pending, 0, l.opts.MaxBatch)
	expect := 1
	for {
		p, ok := <-l.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], p)
		batch = l.gather(batch, expect)
		expect = l.commit(batch)
	}
}

// gather adds to batch whatever is queued, up to MaxBatch. If that is fewer
// than expect, it waits up to GatherWindow for as many. expect is what the
// last commit saw coming: the appenders of the last batch, who are just
// coming back with their next entries, and those who queued up while it
// committed. Counting both keeps the appenders in one batch per commit
// rather than two that alternate, each waiting for the other's commit.
func (l *Log) gather(batch []*pending, expect int) []*pending {
	for len(batch) < l.opts.MaxBatch {
		select {
		case p, ok := <-l.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, p)
			continue
		default:
		}
		break
	}
	target := min(expect, l.opts.MaxBatch)
	if len(batch) >= target || l.opts.GatherWindow <= 0 {
		return batch
	}
	timer := time.NewTimer(l.opts.GatherWindow)
	defer timer.Stop()
	for len(batch) < target {
		select {
		case p, ok := <-l.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, p)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// commit writes the batch, tells each of its appenders the outcome, and
// returns how many entries the next batch can expect (see gather).
func (l *Log) commit(batch []*pending) int {
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.WriteTimeout)
	defer cancel()
	head, refused, err := l.writeBatch(ctx, batch)
	if err != nil {
		for _, p := range batch {
			p.e.Sequence = 0
		}
		l.log.Error("audit batch not committed", "entries", len(batch), "err", err)
		err = fmt.Errorf("audit: commit batch: %w", err)
	} else if len(refused) > 0 {
		l.log.Info("audit refused duplicate final outcomes", "entries", len(refused))
	}
	expect := len(batch) + len(l.reqs)
	written := 0
	for _, p := range batch {
		r := result{seq: p.e.Sequence, err: err}
		if f, ok := refused[p]; ok && err == nil {
			if f.winner != nil {
				f.err.Sequence = f.winner.e.Sequence
			}
			r = result{err: f.err}
		} else if err == nil {
			written++
		}
		p.res <- r
	}
	if err == nil && written > 0 && head%l.opts.CheckpointEvery < int64(written) {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return expect
}

// writeBatch makes the batch durable, less the final outcomes dedupe
// refuses, and returns the new head sequence and the refusals. On
// PostgreSQL, when the writer knows the head it last wrote, it sends the
// batch as one statement (fastInsert); otherwise, or when another instance
// moved the head, it takes the head lock (lockedInsert).
func (l *Log) writeBatch(ctx context.Context, batch []*pending) (int64, map[*pending]refusal, error) {
	if l.head != nil && isPostgres(l.db) {
		ok, refused, err := l.fastInsert(ctx, batch, *l.head)
		if ok {
			return l.head.Seq, refused, nil
		}
		l.head = nil
		if err != nil {
			return 0, nil, err
		}
	}
	head, refused, err := l.lockedInsert(ctx, batch)
	if err != nil {
		return 0, nil, err
	}
	l.head = &head
	return head.Seq, refused, nil
}

// chain assigns sequences and hashes after head and returns the rows and the
// new head.
func chain(batch []*pending, head headRow) ([]entryRow, headRow) {
	rows := make([]entryRow, len(batch))
	for i, p := range batch {
		head.Seq++
		p.e.Sequence, p.e.PrevHash = head.Seq, head.Hash
		if p.body != nil {
			p.e.Hash = chainHash(p.body, p.e.Sequence, p.e.PrevHash)
			rows[i] = p.row
			rows[i].Seq, rows[i].PrevHash, rows[i].Hash = p.e.Sequence, p.e.PrevHash, p.e.Hash
		} else {
			p.e.Hash = computeHash(&p.e)
			rows[i] = toRow(&p.e)
		}
		head.Hash = p.e.Hash
	}
	return rows, head
}

// fastInsert writes the batch after the expected head in a single prepared
// statement (pgBatchInsert: one round trip, one implicit transaction): a
// data-modifying CTE moves the head only if it is still the expected one,
// and the rows' sequences are taken only if it did, so if the head moved
// they are NULL and the whole statement fails. The primary key on seq is a
// second guard. It reports false with a nil error when the head moved; the
// caller then takes the lock.
//
// The batch's final outcomes are looked up just before, outside that
// statement. This is as safe as under the lock: the expected head is the one
// this writer committed last, before the lookup, so if the statement
// succeeds no other writer committed anything since and the lookup saw
// every entry before the batch; if another writer did, the head moved and
// the batch is looked up again under the lock.
func (l *Log) fastInsert(ctx context.Context, batch []*pending, head headRow) (bool, map[*pending]refusal, error) {
	keep, refused, err := dedupe(ctx, l.db, batch)
	if err != nil {
		return false, nil, err
	}
	if len(keep) == 0 {
		return true, refused, nil
	}
	st, err := l.insertStmt(ctx)
	if err != nil {
		return false, nil, err
	}
	rows, next := chain(keep, head)
	_, err = st.ExecContext(ctx, batchArgs(rows, head, next)...)
	if err == nil {
		*l.head = next
		return true, refused, nil
	}
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) && (pgErr.Field('C') == pgNotNullViolation || pgErr.Field('C') == pgUniqueViolation) {
		l.log.Debug("audit head moved by another writer", "expected_seq", head.Seq)
		return false, nil, nil
	}
	return false, nil, fmt.Errorf("insert entries: %w", err)
}

// PostgreSQL error codes fastInsert expects when the head moved.
const (
	pgNotNullViolation = "23502"
	pgUniqueViolation  = "23505"
)

// lockedInsert reads the head under its lock, takes the duplicate final
// outcomes out of the batch (dedupe), chains and inserts the rest and moves
// the head, in one transaction.
func (l *Log) lockedInsert(ctx context.Context, batch []*pending) (headRow, map[*pending]refusal, error) {
	var next headRow
	var refused map[*pending]refusal
	err := l.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		head, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		next = head
		var keep []*pending
		keep, refused, err = dedupe(ctx, tx, batch)
		if err != nil || len(keep) == 0 {
			return err
		}
		var rows []entryRow
		rows, next = chain(keep, head)
		if _, err := tx.NewInsert().Model(&rows).Exec(ctx); err != nil {
			return fmt.Errorf("insert entries: %w", err)
		}
		if _, err := tx.NewUpdate().Model((*headRow)(nil)).Set("seq = ?", next.Seq).Set("hash = ?", next.Hash).
			Where("id = 1").Exec(ctx); err != nil {
			return fmt.Errorf("move head: %w", err)
		}
		return nil
	})
	return next, refused, err
}

// lockHead reads the chain head and holds it until the transaction ends:
// a row lock on PostgreSQL; on SQLite a write to the row, which takes the
// database write lock, so that the read below cannot be overtaken.
func lockHead(ctx context.Context, tx bun.Tx) (headRow, error) {
	var h headRow
	q := tx.NewSelect().Model(&h).Where("id = 1")
	if isPostgres(tx) {
		q = q.For("UPDATE")
	} else if _, err := tx.NewUpdate().Model((*headRow)(nil)).Set("seq = seq").Where("id = 1").Exec(ctx); err != nil {
		return h, fmt.Errorf("lock head: %w", err)
	}
	if err := q.Scan(ctx); err != nil {
		return h, fmt.Errorf("read head: %w", err)
	}
	return h, nil
}
