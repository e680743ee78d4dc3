package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Checkpoint is the signed payload of a checkpoint: the chain head hash at
// a sequence number.
type Checkpoint struct {
	Sequence int64  `json:"sequence"`
	Head     string `json:"head"`
}

// checkpointer signs a checkpoint when the writer says the count threshold
// was crossed, on every CheckpointInterval tick, and once more when the
// writer stops. It reads the head from the database, so checkpoints cover
// entries of every instance.
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

// checkpoint signs and stores a checkpoint of the current head if the chain
// moved since the last one and, unless force, crossed a multiple of
// CheckpointEvery since then (which is when the writer kicks the
// checkpointer: counting from the last checkpoint instead would skip a
// crossing after a checkpoint that came late). It returns the checkpointed
// sequence, or 0.
func (l *Log) checkpoint(ctx context.Context, force bool) (int64, error) {
	var head headRow
	if err := l.db.NewSelect().Model(&head).Where("id = 1").Scan(ctx); err != nil {
		return 0, fmt.Errorf("audit: checkpoint: read head: %w", err)
	}
	// The last sealed sequence: the last checkpoint, or the retention anchor
	// (archived entries are sealed by their signed manifest).
	var lastSeq, anchor int64
	if err := l.db.NewSelect().Model((*checkpointRow)(nil)).ColumnExpr("COALESCE(MAX(seq), 0)").
		Scan(ctx, &lastSeq); err != nil {
		return 0, fmt.Errorf("audit: checkpoint: read last: %w", err)
	}
	if err := l.db.NewSelect().Model((*archiveRow)(nil)).ColumnExpr("COALESCE(MAX(to_seq), 0)").
		Scan(ctx, &anchor); err != nil {
		return 0, fmt.Errorf("audit: checkpoint: read anchor: %w", err)
	}
	lastSeq = max(lastSeq, anchor)
	if head.Seq <= lastSeq || (!force && head.Seq/l.opts.CheckpointEvery == lastSeq/l.opts.CheckpointEvery) {
		return 0, nil
	}
	payload, err := json.Marshal(Checkpoint{Sequence: head.Seq, Head: head.Hash})
	if err != nil {
		return 0, fmt.Errorf("audit: checkpoint: %w", err)
	}
	sigs, err := l.opts.Signer.Sign(ctx, [][]byte{payload})
	if err != nil {
		return 0, fmt.Errorf("audit: checkpoint: sign: %w", err)
	}
	if len(sigs) != 1 {
		return 0, fmt.Errorf("audit: checkpoint: signer returned %d signatures for 1 payload", len(sigs))
	}
	row := &checkpointRow{Seq: head.Seq, Head: head.Hash, At: l.opts.Now().UTC().Truncate(time.Microsecond), JWS: string(sigs[0])}
	if _, err := l.db.NewInsert().Model(row).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
		return 0, fmt.Errorf("audit: checkpoint: store: %w", err)
	}
	l.log.Debug("audit checkpoint", "seq", head.Seq)
	return head.Seq, nil
}

// Checkpoint signs a checkpoint of the current head now, if the chain moved
// since the last one, and returns its sequence (0 if none was needed).
func (l *Log) Checkpoint(ctx context.Context) (int64, error) {
	if l.opts.Signer == nil {
		return 0, ErrReadOnly
	}
	return l.checkpoint(ctx, true)
}
