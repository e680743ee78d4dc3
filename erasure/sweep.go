package erasure

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// sweepRow is a second look at the audit log due for one erased subject
// (Begin). A delivery decided before the erasure came into force may
// complete, and be audited, after the notices were made; so may one that
// an erasure dated ahead let through. Only the subject's HMAC is kept.
type sweepRow struct {
	bun.BaseModel `bun:"table:erasure_sweeps"`

	SubjectHMAC string    `bun:"subject_hmac,pk"`
	ErasedAt    time.Time `bun:"erased_at,notnull"`
	DueAt       time.Time `bun:"due_at,notnull"`
}

// setSweep sets the sweep of hmac due SweepAfter past the erasure's time
// or now, whichever is later; a later Begin of the subject moves it.
func (n *Notifier) setSweep(ctx context.Context, hmac string, erasedAt time.Time) error {
	from := n.opts.Now()
	if erasedAt.After(from) {
		from = erasedAt
	}
	due := from.Add(n.opts.SweepAfter).UTC().Truncate(time.Microsecond)
	row := &sweepRow{SubjectHMAC: hmac, ErasedAt: erasedAt.UTC().Truncate(time.Microsecond), DueAt: due}
	if _, err := n.opts.DB.NewInsert().Model(row).
		On("CONFLICT (subject_hmac) DO UPDATE").Set("erased_at = EXCLUDED.erased_at").Set("due_at = EXCLUDED.due_at").
		Exec(ctx); err != nil {
		return fmt.Errorf("erasure: set sweep: %w", err)
	}
	return nil
}

// sweep looks again, for each subject whose sweep is due, for recipients
// and requests its notices do not name yet (begin), and then drops the
// sweep, unless a later Begin moved it meanwhile. Instances that sweep the
// same subject at once make the same notices.
func (n *Notifier) sweep(ctx context.Context, now time.Time) error {
	var due []sweepRow
	if err := n.opts.DB.NewSelect().Model(&due).Where("due_at <= ?", now).Order("due_at").Limit(batch).
		Scan(ctx); err != nil {
		return fmt.Errorf("erasure: read sweeps: %w", err)
	}
	for _, s := range due {
		if _, err := n.begin(ctx, s.SubjectHMAC, s.ErasedAt); err != nil {
			return err
		}
		if _, err := n.opts.DB.NewDelete().Model((*sweepRow)(nil)).Where("subject_hmac = ?", s.SubjectHMAC).
			Where("due_at = ?", s.DueAt).Exec(ctx); err != nil {
			return fmt.Errorf("erasure: drop sweep: %w", err)
		}
	}
	return nil
}
