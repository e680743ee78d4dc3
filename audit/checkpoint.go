package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Checkpoint is the signed payload of a checkpoint: the chain head hash at
// a sequence number. On a log written as several chains it also vouches
// for the head of every chain that has moved since the fork, as the
// checkpoint read them (Chains): each chain's checkpoints then vouch for
// the others, so a chain cut back, with its own later checkpoints and
// its head row, is found missing by the entries the other chains'
// checkpoints name (Verify). Checkpoints signed before Chains have none.
type Checkpoint struct {
	Sequence int64       `json:"sequence"`
	Head     string      `json:"head"`
	Chains   []ChainHead `json:"chains,omitempty"`
}

// ChainHead is a chain's head as a checkpoint read it: the sequence of its
// last entry and that entry's hash.
type ChainHead struct {
	Sequence int64  `json:"sequence"`
	Head     string `json:"head"`
}

// checkpointer signs checkpoints when a writer says the count threshold was
// crossed, on every CheckpointInterval tick, and once more when the writers
// stop. It reads the heads from the database, so checkpoints cover entries
// of every instance.
func (l *Log) checkpointer() {
	defer l.wg.Done()
	tick := time.NewTicker(l.opts.CheckpointInterval)
	defer tick.Stop()
	for {
		force := false
		select {
		case <-l.kick:
		case <-tick.C:
			force = true
		case <-l.stopCkpt:
			ctx, cancel := context.WithTimeout(context.Background(), l.opts.WriteTimeout)
			if _, err := l.checkpoint(ctx, true); err != nil {
				l.log.Warn("audit final checkpoint not written", "err", err)
			}
			cancel()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.WriteTimeout)
		if _, err := l.checkpoint(ctx, force); err != nil {
			// The chain stays intact; the next tick tries again.
			l.log.Warn("audit checkpoint not written", "err", err)
		}
		cancel()
	}
}

// checkpoint signs and stores a checkpoint of the head of every chain that
// moved since its last one, if force or if they are due: with one chain,
// when its head crossed a multiple of CheckpointEvery since the last
// checkpoint (which is when the writer kicks the checkpointer: counting
// from the last checkpoint instead would skip a crossing after a checkpoint
// that came late); with several, when about CheckpointEvery entries of all
// chains together are unsealed (each writer kicks when its head crosses a
// multiple of CheckpointEvery). All of them are signed in one call to the
// Signer, one round trip to Vault. It returns the highest checkpointed
// sequence, or 0.
func (l *Log) checkpoint(ctx context.Context, force bool) (int64, error) {
	ly := l.ly
	heads, err := readHeads(ctx, l.db, ly)
	if err != nil {
		return 0, fmt.Errorf("audit: checkpoint: %w", err)
	}
	last, err := l.lastSealed(ctx, ly)
	if err != nil {
		return 0, fmt.Errorf("audit: checkpoint: %w", err)
	}
	every := l.opts.CheckpointEvery
	var moved []headRow
	due, unsealed := force, int64(0)
	for c, h := range heads {
		// A chain that has not moved since the fork has no entry of its own
		// yet: its head is the fork entry's hash at a sequence before it.
		if h.Seq <= last[c] || (c > 0 && h.Seq <= ly.fork) {
			continue
		}
		moved = append(moved, h)
		due = due || (ly.k == 1 && h.Seq/every != last[c]/every)
		unsealed += (h.Seq - max(last[c], ly.fork)) / ly.k
	}
	// With several chains, whose sequences step by the number of chains,
	// checkpoints are due once about CheckpointEvery entries of all chains
	// together are unsealed.
	due = due || (ly.k > 1 && unsealed >= every)
	if !due || len(moved) == 0 {
		return 0, nil
	}
	var chains []ChainHead
	if ly.k > 1 {
		for c, h := range heads {
			if c == 0 || h.Seq > ly.fork {
				chains = append(chains, ChainHead{Sequence: h.Seq, Head: h.Hash})
			}
		}
	}
	payloads := make([][]byte, len(moved))
	for i, h := range moved {
		if payloads[i], err = json.Marshal(Checkpoint{Sequence: h.Seq, Head: h.Hash, Chains: chains}); err != nil {
			return 0, fmt.Errorf("audit: checkpoint: %w", err)
		}
	}
	sigs, err := l.opts.Signer.Sign(ctx, payloads)
	if err != nil {
		return 0, fmt.Errorf("audit: checkpoint: sign: %w", err)
	}
	if len(sigs) != len(payloads) {
		return 0, fmt.Errorf("audit: checkpoint: signer returned %d signatures for %d payloads", len(sigs), len(payloads))
	}
	at := l.opts.Now().UTC().Truncate(time.Microsecond)
	rows := make([]checkpointRow, len(moved))
	var top int64
	for i, h := range moved {
		rows[i] = checkpointRow{Seq: h.Seq, Head: h.Hash, At: at, JWS: string(sigs[i])}
		top = max(top, h.Seq)
	}
	if _, err := l.db.NewInsert().Model(&rows).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
		return 0, fmt.Errorf("audit: checkpoint: store: %w", err)
	}
	l.log.Debug("audit checkpoint", "seq", top, "chains", len(moved))
	if l.opts.OnCheckpoint != nil {
		jws := make([]string, len(rows))
		for i := range rows {
			jws[i] = rows[i].JWS
		}
		l.opts.OnCheckpoint(jws)
	}
	// The time index's new page ranges are summarised here, not by
	// autovacuum (20261129000004_time_brin.go). A failure leaves them to
	// the next checkpoint; the checkpoint itself stands.
	if _, err := l.summarizeTime(ctx); err != nil {
		l.log.Warn("audit time index not summarised", "err", err)
	}
	return top, nil
}

// lastSealed returns for each chain of ly the last sealed sequence: that of
// its last checkpoint, or the retention anchor (archived entries are sealed
// by their signed manifest), or a checkpoint before the fork, which all
// chains share.
func (l *Log) lastSealed(ctx context.Context, ly layout) ([]int64, error) {
	var base, anchor int64
	q := l.db.NewSelect().Model((*checkpointRow)(nil)).ColumnExpr("COALESCE(MAX(seq), 0)")
	if ly.k > 1 {
		q = q.Where("seq <= ?", ly.fork)
	}
	if err := q.Scan(ctx, &base); err != nil {
		return nil, fmt.Errorf("read last: %w", err)
	}
	if err := l.db.NewSelect().Model((*archiveRow)(nil)).ColumnExpr("COALESCE(MAX(to_seq), 0)").
		Scan(ctx, &anchor); err != nil {
		return nil, fmt.Errorf("read anchor: %w", err)
	}
	last := make([]int64, ly.k)
	for c := range last {
		last[c] = max(base, anchor)
	}
	if ly.k == 1 {
		return last, nil
	}
	var per []struct {
		Chain int64 `bun:"chain"`
		Seq   int64 `bun:"seq"`
	}
	if err := l.db.NewSelect().Model((*checkpointRow)(nil)).
		ColumnExpr("(seq - ?) % ? AS chain, MAX(seq) AS seq", ly.fork, ly.k).
		Where("seq > ?", ly.fork).GroupExpr("1").Scan(ctx, &per); err != nil {
		return nil, fmt.Errorf("read last: %w", err)
	}
	for _, p := range per {
		if p.Chain >= 0 && p.Chain < ly.k {
			last[p.Chain] = max(last[p.Chain], p.Seq)
		}
	}
	return last, nil
}

// Checkpoint signs a checkpoint of the head of every chain that moved since
// its last one, now, and returns the highest of their sequences (0 if none
// was needed).
func (l *Log) Checkpoint(ctx context.Context) (int64, error) {
	if l.opts.Signer == nil {
		return 0, ErrReadOnly
	}
	return l.checkpoint(ctx, true)
}

// CheckpointsAfter returns the compact JWS of up to limit checkpoints past
// sequence seq, in sequence order: what audit/mirror publishes of the
// checkpoints a stream of copies lacks.
func (l *Log) CheckpointsAfter(ctx context.Context, seq int64, limit int) ([]string, error) {
	var jws []string
	if err := l.db.NewSelect().Model((*checkpointRow)(nil)).Column("jws").Where("seq > ?", seq).
		Order("seq").Limit(int64(limit)).Scan(ctx, &jws); err != nil {
		return nil, fmt.Errorf("audit: checkpoints: %w", err)
	}
	return jws, nil
}
