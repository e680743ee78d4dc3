package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/uptrace/bun"
)

// ErrChainsMismatch is returned by Open when Options.Chains differs from the
// number of chains the database records: every instance must route a request
// to the same chain, so the number is fixed once the log has forked.
var ErrChainsMismatch = errors.New("audit: configured number of chains differs from the database's")

// MaxChains bounds the number of hash chains a log is written as: each is
// a row of the head table and a lane of every verify, and past a handful
// more chains only spread the same writers thinner. A larger number
// recorded in the database was not written by a log; verify refuses it.
const MaxChains = 64

// DefaultChains is the number of chains a deployment should configure for
// db: 2 on PostgreSQL, where batches of different chains commit in parallel
// and share WAL flushes, and 1 on SQLite, which has a single writer anyway.
// More chains pay only while the database has cores to run their batches
// at once: each chain's batches are smaller, so every entry carries more of
// a commit's fixed cost (see the package documentation).
func DefaultChains(db bun.IDB) int {
	if isPostgres(db) {
		return 2
	}
	return 1
}

// layout is how the log's sequence numbers are shared among its chains.
// Entries up to fork belong to the single chain the log started with; after
// it, chain c holds the sequences fork+c+j*k (chain 0: fork+k, fork+2k, ...),
// and each chain's first entry links to the hash of entry fork. With k = 1
// there is one chain and fork is irrelevant.
type layout struct {
	k    int64
	fork int64
}

var singleChain = layout{k: 1}

// chainOf returns the chain that sequence seq belongs to (0 up to the fork).
func (ly layout) chainOf(seq int64) int {
	if ly.k == 1 || seq <= ly.fork {
		return 0
	}
	return int((seq - ly.fork) % ly.k)
}

// route returns the chain an entry is written to: one chosen by its request
// id, so that every entry of a request is in one chain and the final
// outcome look-up (dedupe) under that chain's head sees all of them.
// Entries without a request id go to chain 0.
func (ly layout) route(requestID string) int {
	if ly.k == 1 || requestID == "" {
		return 0
	}
	// FNV-1a, 32 bits (hash/fnv's New32a), written out so that routing
	// allocates nothing.
	h := uint32(2166136261)
	for i := 0; i < len(requestID); i++ {
		h ^= uint32(requestID[i])
		h *= 16777619
	}
	return int(h % uint32(ly.k))
}

// setupChains returns the layout of db for a writer asking for want chains
// (0: whatever db records, else 1). The first writer asking for more than
// one forks the log: under the lock of the head of chain 0 it records the
// number of chains and the fork sequence (the head), seeds the head of
// every other chain with the head's hash, at the sequence k before its
// first, and constrains every head to its chain's sequences. A different
// number from the recorded one is ErrChainsMismatch.
func setupChains(ctx context.Context, db *bun.DB, want int) (layout, error) {
	if want < 0 || want > MaxChains {
		return layout{}, fmt.Errorf("audit: chains: %d is not a number of chains (0 to %d)", want, MaxChains)
	}
	if want > 1 && !isPostgres(db) {
		return layout{}, fmt.Errorf("audit: chains: %d chains configured; SQLite has one writer and takes 1", want)
	}
	var ly layout
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if want > 1 {
			// A writer that may fork takes the head table whole before
			// anything else: the fork alters that table, and a fork
			// holding a head row while another opener waits for that row
			// (holding a share of the table) would deadlock.
			if _, err := tx.ExecContext(ctx, "LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE"); err != nil {
				return fmt.Errorf("lock heads: %w", err)
			}
		}
		head, err := lockHead(ctx, tx, 0)
		if err != nil {
			return err
		}
		var row chainsRow
		switch err := tx.NewSelect().Model(&row).Where("id = 1").Scan(ctx); {
		case err == nil:
			if want != 0 && int64(want) != row.Chains {
				return fmt.Errorf("%w: %d configured, the database has %d (forked at entry %d); configure %d",
					ErrChainsMismatch, want, row.Chains, row.ForkSeq, row.Chains)
			}
			ly = layout{k: row.Chains, fork: row.ForkSeq}
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read chains: %w", err)
		}
		if want <= 1 {
			ly = singleChain
			return nil
		}
		ly = layout{k: int64(want), fork: head.Seq}
		if _, err := tx.NewInsert().Model(&chainsRow{ID: 1, Chains: ly.k, ForkSeq: ly.fork}).Exec(ctx); err != nil {
			return fmt.Errorf("record chains: %w", err)
		}
		// Writers that do not know of the fork (earlier versions, or a Log
		// opened with one chain before it) would go on writing the single
		// chain over the other chains' places. The head rows of the chains
		// only ever take their chain's sequences, which this check holds:
		// such a writer's move of the head fails, and so does its batch.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("ALTER TABLE audit_head ADD CONSTRAINT audit_head_chains "+
			"CHECK (seq <= %d OR (seq - %d - (id - 1)) %% %d = 0)", ly.fork, ly.fork, ly.k)); err != nil {
			return fmt.Errorf("guard chain heads: %w", err)
		}
		heads := make([]headRow, 0, ly.k-1)
		for c := int64(1); c < ly.k; c++ {
			heads = append(heads, headRow{ID: c + 1, Seq: ly.fork + c - ly.k, Hash: head.Hash})
		}
		if _, err := tx.NewInsert().Model(&heads).Exec(ctx); err != nil {
			return fmt.Errorf("seed chain heads: %w", err)
		}
		return nil
	})
	if err != nil {
		return layout{}, fmt.Errorf("audit: chains: %w", err)
	}
	return ly, nil
}

// loadLayout reads the layout of db for readers: a single chain unless
// audit_chains (which a database migrated by an older version lacks) says
// otherwise.
func loadLayout(ctx context.Context, db bun.IDB) (layout, error) {
	var exists bool
	q := "SELECT to_regclass('audit_chains') IS NOT NULL"
	if !isPostgres(db) {
		q = "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_chains')"
	}
	if err := db.NewRaw(q).Scan(ctx, &exists); err != nil {
		return layout{}, fmt.Errorf("audit: read chains: %w", err)
	}
	if !exists {
		return singleChain, nil
	}
	var row chainsRow
	switch err := db.NewSelect().Model(&row).Where("id = 1").Scan(ctx); {
	case errors.Is(err, sql.ErrNoRows):
		return singleChain, nil
	case err != nil:
		return layout{}, fmt.Errorf("audit: read chains: %w", err)
	}
	if row.Chains < 1 || row.Chains > MaxChains || row.ForkSeq < 0 {
		return layout{}, fmt.Errorf("audit: read chains: %d chains from sequence %d recorded, a layout no log writes: the audit_chains row was edited", row.Chains, row.ForkSeq)
	}
	return layout{k: row.Chains, fork: row.ForkSeq}, nil
}

// readHeads returns the head of every chain of ly, indexed by chain.
func readHeads(ctx context.Context, db bun.IDB, ly layout) ([]headRow, error) {
	var rows []headRow
	if err := db.NewSelect().Model(&rows).Where("id <= ?", ly.k).Order("id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("audit: read chain heads: %w", err)
	}
	if int64(len(rows)) != ly.k {
		return nil, fmt.Errorf("audit: read chain heads: %d of %d found", len(rows), ly.k)
	}
	return rows, nil
}

// stableOf returns the stable sequence of a log with layout ly and chain
// heads heads: the highest sequence up to which every sequence is taken and
// below which no chain will write again. With one chain it is the head;
// with several, the lowest head (a chain that lags may still write above
// it), and at least the fork, up to which the single chain wrote.
func stableOf(ly layout, heads []headRow) int64 {
	s := heads[0].Seq
	if ly.k > 1 {
		for _, h := range heads {
			s = min(s, h.Seq)
		}
		s = max(s, ly.fork)
	}
	return s
}

// StableSequence returns the log's stable sequence: every entry up to it is
// written, and no entry at or below it will be. With one chain (the
// default) it is the last sequence written. With several chains, entries
// interleave by chain and a chain that lags behind the others fills its
// sequences later, so a reader that follows the log by sequence (AfterSequence)
// and has read past StableSequence must read again from there to see them.
// A query started after StableSequence returned sees every entry up to it.
func (l *Log) StableSequence(ctx context.Context) (int64, error) {
	ly, err := loadLayout(ctx, l.db)
	if err != nil {
		return 0, err
	}
	heads, err := readHeads(ctx, l.db, ly)
	if err != nil {
		return 0, err
	}
	return stableOf(ly, heads), nil
}

// ChainAnchor is where one chain continues after an archived range: the
// sequence its next entry must have and the hash that entry must link to.
type ChainAnchor struct {
	Next int64  `json:"next_sequence"`
	Prev string `json:"prev_hash"`
}

// walker follows the chains of a layout through entries in sequence order,
// knowing for each chain the sequence and prev_hash of its next entry.
type walker struct {
	ly     layout
	forked bool
	lanes  []laneState
}

type laneState struct {
	ChainAnchor
	// last is the sequence of the chain's last entry seen (0: the anchor
	// the walk started from).
	last int64
}

// newWalker starts a walk at sequence start after prev, or, for a walk that
// starts past the fork, at the per-chain anchors (one per chain).
func newWalker(ly layout, start int64, prev string, anchors []ChainAnchor) (*walker, error) {
	w := &walker{ly: ly, lanes: make([]laneState, ly.k)}
	switch {
	case ly.k == 1 || start-1 < ly.fork:
		w.lanes[0].ChainAnchor = ChainAnchor{Next: start, Prev: prev}
	case len(anchors) == int(ly.k):
		w.forked = true
		for c := range w.lanes {
			w.lanes[c].ChainAnchor = anchors[c]
		}
	case start-1 == ly.fork:
		w.forkAt(prev)
	default:
		return nil, fmt.Errorf("no anchor for each of %d chains", ly.k)
	}
	return w, nil
}

// forkAt starts every chain after the fork entry, whose hash is hash.
func (w *walker) forkAt(hash string) {
	w.forked = true
	for c := range w.lanes {
		w.lanes[c].ChainAnchor = ChainAnchor{Next: w.ly.fork + int64(c), Prev: hash}
		w.lanes[c].last = w.ly.fork
	}
	w.lanes[0].Next = w.ly.fork + w.ly.k
}

// lane returns the chain of seq and its state.
func (w *walker) lane(seq int64) (int, *laneState) {
	c := w.ly.chainOf(seq)
	return c, &w.lanes[c]
}

// step records the entry seq with hash as its chain's latest.
func (w *walker) step(seq int64, hash string) {
	_, st := w.lane(seq)
	st.Prev, st.last = hash, seq
	switch {
	case w.ly.k == 1 || seq < w.ly.fork:
		st.Next = seq + 1
	case seq == w.ly.fork && !w.forked:
		w.forkAt(hash)
	default:
		st.Next = seq + w.ly.k
	}
}

// anchors returns the per-chain anchors after the walk so far (nil before
// the fork).
func (w *walker) anchors() []ChainAnchor {
	if !w.forked || w.ly.k == 1 {
		return nil
	}
	out := make([]ChainAnchor, len(w.lanes))
	for c, st := range w.lanes {
		out[c] = st.ChainAnchor
	}
	return out
}

// forkError returns, for a lane whose batch statement moved no head under
// the head's lock, an error wrapping ErrChainsMismatch if the lane's Log
// writes the log as one chain and the database records a fork: another
// instance forked the log after this Log opened it, and
// pgBatchInsertSingle refuses to move its head. It returns nil otherwise
// (a recorded final outcome stopped the statement). db is the
// transaction, or the connection in one, that holds the lock.
func (ln *lane) forkError(ctx context.Context, db bun.IDB) error {
	if ln.l.ly.k != 1 {
		return nil
	}
	var row chainsRow
	switch err := db.NewSelect().Model(&row).Where("id = 1").Scan(ctx); {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("read chains: %w", err)
	}
	return fmt.Errorf("%w: the log was forked into %d chains at entry %d by another instance after this Log opened it as one chain; reopen with audit.chains %d",
		ErrChainsMismatch, row.Chains, row.ForkSeq, row.Chains)
}
