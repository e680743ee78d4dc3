package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"
)

// writer is the group-commit loop of one chain: it takes the first waiting
// entry, drains whatever else is queued up to MaxBatch, and commits them in
// one transaction. While a batch commits, the next one queues up; the
// writers of other chains commit theirs at the same time.
func (ln *lane) writer() {
	defer ln.l.writers.Done()
	defer ln.release()
	batch := make([]*pending, 0, ln.l.opts.MaxBatch)
	expect := 1
	for {
		p, ok := <-ln.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], p)
		batch = ln.gather(batch, expect)
		expect = ln.commit(batch)
	}
}

// gather adds to batch whatever is queued, up to MaxBatch. If that is fewer
// than expect, it waits up to GatherWindow for as many. expect is what the
// last commit saw coming: the appenders of the last batch, who are just
// coming back with their next entries, and those who queued up while it
// committed. Counting both keeps the appenders in one batch per commit
// rather than two that alternate, each waiting for the other's commit.
func (ln *lane) gather(batch []*pending, expect int) []*pending {
	l := ln.l
	for len(batch) < l.opts.MaxBatch {
		select {
		case p, ok := <-ln.reqs:
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
		case p, ok := <-ln.reqs:
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
func (ln *lane) commit(batch []*pending) int {
	l := ln.l
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.WriteTimeout)
	defer cancel()
	start := time.Now()
	head, refused, err := ln.writeBatch(ctx, batch)
	took := time.Since(start)
	if err != nil {
		for _, p := range batch {
			p.e.Sequence = 0
		}
		l.log.Error("audit batch not committed", "chain", ln.chain, "entries", len(batch), "err", err)
		err = fmt.Errorf("audit: commit batch: %w", err)
	} else if len(refused) > 0 {
		l.log.Info("audit refused duplicate final outcomes", "entries", len(refused))
	}
	expect := len(batch) + len(ln.reqs)
	written := 0
	for _, p := range batch {
		p.r = result{seq: p.e.Sequence, err: err}
		if f, ok := refused[p]; ok && err == nil {
			if f.winner != nil {
				f.err.Sequence = f.winner.e.Sequence
			}
			p.r = result{err: f.err}
		} else if err == nil {
			written++
		}
	}
	// Every result is settled before the first is sent: an appender that
	// has its result reuses its pending (a winner's too), so the writer
	// must not read one after sending it.
	for _, p := range batch {
		p.res <- p.r
	}
	if err == nil && written > 0 && l.opts.OnCommit != nil {
		l.opts.OnCommit(written, took)
	}
	// Kick the checkpointer when the head crossed a multiple of
	// CheckpointEvery.
	if every := l.opts.CheckpointEvery; err == nil && written > 0 && head/every != (head-int64(written)*l.ly.k)/every {
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
// moved the head, it takes the head lock (lockedInsert), and keeps taking it
// while another writer commits to the chain between its batches (lane.shared).
func (ln *lane) writeBatch(ctx context.Context, batch []*pending) (int64, map[*pending]refusal, error) {
	if ln.forked != nil {
		return 0, nil, ln.forked
	}
	if ln.conn == nil && isPostgres(ln.l.db) {
		c, err := ln.l.db.Conn(ctx)
		if err != nil {
			return 0, nil, fmt.Errorf("connect: %w", err)
		}
		// The writer's statements are small and planned for a table whose
		// statistics may be missing (see pgRecordedFinals); compiling them
		// with JIT, which a cost estimate from no statistics can trigger,
		// took 320 ms a batch.
		if _, err := c.ExecContext(ctx, "SET jit = off"); err != nil {
			_ = c.Close()
			return 0, nil, fmt.Errorf("connect: %w", err)
		}
		indexed, err := finalsIndexed(ctx, c)
		if err != nil {
			_ = c.Close()
			return 0, nil, fmt.Errorf("connect: %w", err)
		}
		if !indexed {
			ln.l.log.Warn("the unique index of final outcomes is missing (does the log hold a request with two?): every batch looks its final outcomes up",
				"chain", ln.chain, "index", requestFinalIdx)
		}
		ln.finalsIndexed = indexed
		ln.conn = &c
	}
	if ln.head != nil && !ln.shared && isPostgres(ln.l.db) {
		ok, refused, err := ln.fastInsert(ctx, batch, *ln.head)
		if ok {
			return ln.head.Seq, refused, nil
		}
		if err != nil {
			ln.head = nil
			ln.release()
			return 0, nil, err
		}
	}
	var head headRow
	var refused map[*pending]refusal
	err := errFinalRecorded
	if ln.conn != nil {
		head, refused, err = ln.lockedPrepared(ctx, batch)
	}
	if errors.Is(err, errFinalRecorded) {
		// The batch holds an outcome recorded already (a redelivery), or
		// this is SQLite: under the lock, looking the outcomes up first.
		head, refused, err = ln.lockedInsert(ctx, batch)
	}
	if err != nil {
		if errors.Is(err, ErrChainsMismatch) {
			ln.forked = err
		}
		ln.release()
		return 0, nil, err
	}
	ln.head = &head
	return head.Seq, refused, nil
}

// release closes the lane's prepared statement and returns its connection
// to the pool (which drops it if it broke); the next batch takes another.
func (ln *lane) release() {
	if ln.pgInsert != nil {
		_ = ln.pgInsert.Close()
		ln.pgInsert = nil
	}
	if ln.conn != nil {
		_ = ln.conn.Close()
		ln.conn = nil
	}
}

// link assigns sequences (step apart: the number of chains) and hashes
// after head and returns the new head.
func (ln *lane) link(batch []*pending, head headRow) headRow {
	if len(batch) == 0 {
		return head
	}
	step := ln.l.ly.k
	prev := append(ln.hasher.head[:0], head.Hash...)
	ln.hasher.head = prev
	for _, p := range batch {
		head.Seq += step
		p.e.Sequence = head.Seq
		ln.hasher.sum(&p.hash, p.body, p.e.Sequence, prev)
		prev = p.hash[:]
	}
	head.Hash = string(prev)
	return head
}

// entryRows returns the stored form of batch, chained after head (link).
func entryRows(batch []*pending, head headRow) []entryRow {
	rows := make([]entryRow, len(batch))
	prev := head.Hash
	for i, p := range batch {
		rows[i] = p.row(prev)
		prev = rows[i].Hash
	}
	return rows
}

// fastInsert writes the batch after the expected head in a single prepared
// statement (pgBatchInsert: one round trip, one implicit transaction): a
// data-modifying CTE moves the head only if it is still the expected one,
// and the rows' sequences are taken only if it moved, so otherwise they are
// NULL and the whole statement fails. The primary key on seq is a second
// guard. A final outcome of a request that has one recorded fails it too:
// on the unique index of final outcomes (finalsIndexed), or, without it,
// because the CTE looks the batch's final outcomes up and leaves the head.
// The CTE always looks up the requests of the batch's decisions to allow
// (opensDelivery), which no index refuses: one probe of the request id
// index each. It reports false with a nil error when the head moved or an
// outcome is recorded (redeliveries, and requests sent again after the
// stream forgot their id); the caller then takes the lock, under which the
// outcomes are looked up and refused. Duplicates within the batch are
// refused here, before it is chained.
//
// The look-up in the statement is as safe as the one under the lock: the
// expected head is the one this writer committed last, so if the head still
// is the expected one no other writer committed to the chain since, and the
// statement's snapshot holds every entry before the batch (a request's
// entries all go to one chain); if another writer did commit, the
// compare-and-set fails.
func (ln *lane) fastInsert(ctx context.Context, batch []*pending, head headRow) (bool, map[*pending]refusal, error) {
	l := ln.l
	keep, refused := dedupeAgainst(batch, nil)
	if len(keep) == 0 {
		return true, refused, nil
	}
	st, err := ln.insertStmt(ctx)
	if err != nil {
		return false, nil, err
	}
	next := ln.link(keep, head)
	all, err := ln.insertBatch(ctx, st.ExecContext, keep, head, next, true)
	if err == nil && all {
		*ln.head = next
		return true, refused, nil
	}
	if err == nil || recorded(err) {
		l.log.Debug("audit head moved by another writer, or a final outcome recorded", "chain", ln.chain, "expected_seq", head.Seq)
		return false, nil, nil
	}
	return false, nil, fmt.Errorf("insert entries: %w", err)
}

// insertBatch runs the batch statement (pgBatchInsert) through exec (the
// lane's prepared statement, or the statement's text in a transaction) for
// keep, chained from head to next, releases the arguments batchArgs built
// for it, and reports whether it inserted every row (insertedAll).
func (ln *lane) insertBatch(ctx context.Context, exec func(context.Context, ...any) (sql.Result, error), keep []*pending, head, next headRow, look bool) (bool, error) {
	res, err := exec(ctx, ln.batchArgs(keep, head, next, look)...)
	ln.releaseArgs()
	return insertedAll(res, err, len(keep))
}

// insertedAll reads the result of the batch statement (pgBatchInsert) for
// n rows: whether it inserted them all, which it does only when it moved
// the head. Inserting none is its answer when another writer moved the
// head or a final outcome of the batch is recorded.
func insertedAll(res sql.Result, err error, n int) (bool, error) {
	if err != nil {
		return false, err
	}
	got, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("rows inserted: %w", err)
	}
	switch got {
	case int64(n):
		return true, nil
	case 0:
		return false, nil
	}
	return false, fmt.Errorf("inserted %d of a batch of %d entries", got, n)
}

// pgUniqueViolation is the PostgreSQL error code of a unique index's
// refusal.
const pgUniqueViolation = "23505"

// recorded reports whether err is the batch statement's failure on a unique
// index (the primary key, or that of final outcomes, which refuses a second
// final outcome of a request).
func recorded(err error) bool {
	var pgErr pgdriver.Error
	return errors.As(err, &pgErr) && pgErr.Field('C') == pgUniqueViolation
}

// errFinalRecorded is lockedPrepared's report that the batch statement
// found a final outcome of the batch recorded already, with nothing
// written.
var errFinalRecorded = errors.New("audit: a final outcome of the batch is recorded already")

// lockedPrepared is lockedInsert on the lane's PostgreSQL connection with
// the prepared statement of fastInsert, which looks the batch's final
// outcomes and decisions to allow up itself: while the head is locked,
// which is what the other instances writing the chain wait for, it costs
// one round trip and no parse or plan, where lockedInsert takes a look-up
// and the statement unprepared. The transaction is begun and ended by
// statements on the connection: a database/sql transaction would prepare
// the statement again each time. If an outcome of the batch is recorded
// already the statement writes nothing and lockedPrepared returns
// errFinalRecorded; lockedInsert then refuses it.
func (ln *lane) lockedPrepared(ctx context.Context, batch []*pending) (next headRow, refused map[*pending]refusal, err error) {
	c := ln.conn
	if _, err := c.ExecContext(ctx, "BEGIN"); err != nil {
		return next, nil, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			// Also after a cancelled ctx: the connection must leave the
			// transaction (if this fails, writeBatch drops the connection).
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, rerr := c.ExecContext(rctx, "ROLLBACK"); rerr != nil {
				err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
			}
			cancel()
		}
	}()
	head, err := lockHead(ctx, c, ln.chain)
	if err != nil {
		return next, nil, err
	}
	ln.shared = ln.head != nil && (ln.head.Seq != head.Seq || ln.head.Hash != head.Hash)
	next = head
	keep, refused := dedupeAgainst(batch, nil)
	if len(keep) > 0 {
		st, err := ln.insertStmt(ctx)
		if err != nil {
			return next, nil, err
		}
		next = ln.link(keep, head)
		all, err := ln.insertBatch(ctx, st.ExecContext, keep, head, next, true)
		if err == nil && !all {
			// The head is locked: only a recorded final outcome stops
			// it, or a fork (pgBatchInsertSingle).
			if err := ln.forkError(ctx, c); err != nil {
				return next, nil, err
			}
			return next, nil, errFinalRecorded
		}
		if recorded(err) {
			return next, nil, errFinalRecorded
		}
		if err != nil {
			return next, nil, fmt.Errorf("insert entries: %w", err)
		}
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		return next, nil, fmt.Errorf("commit: %w", err)
	}
	return next, refused, nil
}

// lockedInsert reads the head under its lock, takes the duplicate final
// outcomes out of the batch (dedupe), chains and inserts the rest and moves
// the head, in one transaction.
func (ln *lane) lockedInsert(ctx context.Context, batch []*pending) (headRow, map[*pending]refusal, error) {
	var next headRow
	var refused map[*pending]refusal
	run := ln.l.db.RunInTx
	if ln.conn != nil {
		run = ln.conn.RunInTx
	}
	err := run(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		head, err := lockHead(ctx, tx, ln.chain)
		if err != nil {
			return err
		}
		ln.shared = ln.head != nil && (ln.head.Seq != head.Seq || ln.head.Hash != head.Hash)
		next = head
		var keep []*pending
		keep, refused, err = dedupe(ctx, tx, batch)
		if err != nil || len(keep) == 0 {
			return err
		}
		next = ln.link(keep, head)
		if isPostgres(tx) {
			// The batch statement of fastInsert, sent unprepared: its
			// compare-and-set holds, since the head is locked, and it
			// moves the head with the rows, instead of a multi-row
			// VALUES insert with every value inlined and an UPDATE.
			all, err := ln.insertBatch(ctx, func(ctx context.Context, args ...any) (sql.Result, error) {
				return tx.Tx.ExecContext(ctx, ln.batchInsert(), args...)
			}, keep, head, next, false)
			if err == nil && !all {
				// The head is locked: only a fork stops it.
				if err = ln.forkError(ctx, tx); err == nil {
					err = errors.New("the head did not move under its lock")
				}
			}
			if err != nil {
				return fmt.Errorf("insert entries: %w", err)
			}
			return nil
		}
		rows := entryRows(keep, head)
		if _, err := tx.NewInsert().Model(&rows).Exec(ctx); err != nil {
			return fmt.Errorf("insert entries: %w", err)
		}
		if _, err := tx.NewUpdate().Model((*headRow)(nil)).Set("seq = ?", next.Seq).Set("hash = ?", next.Hash).
			Where("id = ?", next.ID).Exec(ctx); err != nil {
			return fmt.Errorf("move head: %w", err)
		}
		return nil
	})
	return next, refused, err
}

// lockHead reads the head of chain c and holds it until the transaction
// ends: a row lock on PostgreSQL; on SQLite a write to the row, which takes
// the database write lock, so that the read below cannot be overtaken.
// tx is the transaction, or the connection in a transaction, that holds it.
func lockHead(ctx context.Context, tx bun.IDB, c int) (headRow, error) {
	var h headRow
	id := c + 1
	q := tx.NewSelect().Model(&h).Where("id = ?", id)
	if isPostgres(tx) {
		q = q.For("UPDATE")
	} else if _, err := tx.NewUpdate().Model((*headRow)(nil)).Set("seq = seq").Where("id = ?", id).Exec(ctx); err != nil {
		return h, fmt.Errorf("lock head: %w", err)
	}
	if err := q.Scan(ctx); err != nil {
		return h, fmt.Errorf("read head: %w", err)
	}
	return h, nil
}
