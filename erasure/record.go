package erasure

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/nats-io/nuid"
	"github.com/uptrace/bun"
)

// pendingRow is the audit entry of a notice's change of status (its
// closing: an acknowledgement, a justification; or its escalation) until
// the audit log holds it. It is written in one transaction with the
// notice's new status, so that no notice closes or escalates without its
// entry (Art. 19 evidence), nor twice; it is appended at once and deleted once
// appended. One whose append failed, or whose instance stopped before it
// was appended, is appended by a retry of the call that closed the notice,
// or by the next round of any instance (flushDue); each looks for it in the
// audit log first, so that an entry appended whose row could not be
// deleted is not appended twice. It holds what the entry holds: ids, HMACs
// and a digest, never a personal value.
type pendingRow struct {
	bun.BaseModel `bun:"table:erasure_pending_entries"`

	ID         string    `bun:"id,pk"`         // pendingID: the notice's id and the entry's event
	Entry      string    `bun:"entry,notnull"` // the audit.Entry, JSON
	LeaseOwner string    `bun:"lease_owner,notnull"`
	LeaseUntil time.Time `bun:"lease_until,notnull"`
}

// pendingLease is how long one call holds a pending entry it appends;
// another call or instance takes it over only after that (or at once, if
// the holder's append failed and it let go). An append that outlasts it (a
// log stalled that long) may be made again by whoever takes the entry
// over: the one window for a second entry.
const pendingLease = 2 * time.Minute

// errPendingBusy: the notice's closing entry is pending and another call
// holds it, appending it now, or it stopped before it could and its lease
// has not ended; the entry is appended then, by a retry or a round.
var errPendingBusy = errors.New("erasure: the notice's audit entry is being recorded; try again")

// pendingID keys the pending entry of e, the entry of notice e.RequestID's
// change to e.Event: a notice closes, and escalates, once under its id.
func pendingID(e *audit.Entry) string { return e.RequestID + " " + string(e.Event) }

// openStatuses returns the statuses of the notices update may close.
func openStatuses(s ...Status) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = string(s[i])
	}
	return out
}

// recordChange runs update (a notice's change of status, made conditional
// on the status it changes from) and records e as pending in the same
// transaction, and appends e if update changed the notice; it reports
// whether it did. Of concurrent calls on one notice, one changes it. An error after the change (the append failed) leaves the entry
// pending, free to be appended by a retry (flushPending) or the next
// round.
func (n *Notifier) recordChange(ctx context.Context, e *audit.Entry, update func(bun.IDB) *bun.UpdateQuery) (bool, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("erasure: encode entry: %w", err)
	}
	row := &pendingRow{ID: pendingID(e), Entry: string(data), LeaseOwner: nuid.Next(),
		LeaseUntil: n.opts.Now().UTC().Truncate(time.Microsecond).Add(pendingLease)}
	changed := false
	err = n.opts.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := update(tx).Exec(ctx)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return nil
		}
		if _, err := tx.NewInsert().Model(row).Exec(ctx); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("erasure: record the notice's %s: %w", e.Event, err)
	}
	if !changed {
		return false, nil
	}
	return true, n.appendPending(ctx, row, e)
}

// appendPending appends e, the entry of row (held by this call), and
// drops row; if the append fails it lets row go, so that a retry need not
// wait for the lease to end.
func (n *Notifier) appendPending(ctx context.Context, row *pendingRow, e *audit.Entry) error {
	if _, err := n.opts.Audit.Append(ctx, e); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, uerr := n.opts.DB.NewUpdate().Model((*pendingRow)(nil)).Set("lease_until = ?", time.Unix(0, 0).UTC()).
			Where("id = ?", row.ID).Where("lease_owner = ?", row.LeaseOwner).Exec(rctx); uerr != nil {
			n.log.Warn("erasure entry pending until its lease ends", "notice", e.RequestID, "err", uerr)
		}
		return fmt.Errorf("erasure: audit %s: %w", e.Event, err)
	}
	if _, err := n.opts.DB.NewDelete().Model((*pendingRow)(nil)).
		Where("id = ?", row.ID).Where("lease_owner = ?", row.LeaseOwner).Exec(ctx); err != nil {
		// The entry is in the log: whoever takes the row over finds it
		// there and drops the row.
		n.log.Warn("erasure entry appended; its pending row stays until taken over", "notice", e.RequestID, "err", err)
	}
	return nil
}

// flushPending appends the pending entry id unless the audit log holds it
// already, and drops it. Without one it does nothing; one another call
// holds is errPendingBusy.
func (n *Notifier) flushPending(ctx context.Context, id string) error {
	now := n.opts.Now().UTC().Truncate(time.Microsecond)
	owner := nuid.Next()
	res, err := n.opts.DB.NewUpdate().Model((*pendingRow)(nil)).
		Set("lease_owner = ?", owner).Set("lease_until = ?", now.Add(pendingLease)).
		Where("id = ?", id).Where("lease_until < ?", now).Exec(ctx)
	if err != nil {
		return fmt.Errorf("erasure: take pending entry: %w", err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		exists, err := n.opts.DB.NewSelect().Model((*pendingRow)(nil)).Where("id = ?", id).Exists(ctx)
		switch {
		case err != nil:
			return fmt.Errorf("erasure: read pending entry: %w", err)
		case exists:
			return errPendingBusy
		}
		return nil
	}
	var row pendingRow
	if err := n.opts.DB.NewSelect().Model(&row).Where("id = ?", id).Where("lease_owner = ?", owner).Scan(ctx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return errPendingBusy
		}
		return fmt.Errorf("erasure: read pending entry: %w", err)
	}
	var e audit.Entry
	if err := json.Unmarshal([]byte(row.Entry), &e); err != nil {
		return fmt.Errorf("erasure: decode pending entry %s: %w", id, err)
	}
	// An earlier holder may have appended it and stopped (or failed to
	// drop the row) before dropping the row.
	found := false
	err = n.opts.Audit.Scan(ctx, audit.Filter{RequestID: e.RequestID, Event: e.Event, SubjectHMAC: e.SubjectHMAC}, func(got *audit.Entry) error {
		found = found || (got.Source == e.Source && got.Recipient == e.Recipient && got.PayloadDigest == e.PayloadDigest &&
			slices.Equal(got.Reasons, e.Reasons))
		return nil
	})
	if err != nil {
		return fmt.Errorf("erasure: look for pending entry: %w", err)
	}
	if !found {
		return n.appendPending(ctx, &row, &e)
	}
	if _, err := n.opts.DB.NewDelete().Model((*pendingRow)(nil)).Where("id = ?", id).Where("lease_owner = ?", owner).
		Exec(ctx); err != nil {
		return fmt.Errorf("erasure: drop pending entry: %w", err)
	}
	return nil
}

// flushDue appends the pending entries no call holds: those whose append
// failed, or whose instance stopped before it appended them.
func (n *Notifier) flushDue(ctx context.Context, now time.Time) error {
	var ids []string
	if err := n.opts.DB.NewSelect().Model((*pendingRow)(nil)).Column("id").Where("lease_until < ?", now).
		Order("id").Limit(batch).Scan(ctx, &ids); err != nil {
		return fmt.Errorf("erasure: read pending entries: %w", err)
	}
	for _, id := range ids {
		// One entry that cannot be appended (its row unreadable, the
		// log refusing it) holds up neither the others nor the notices:
		// it is named, kept, and tried again next round.
		if err := n.flushPending(ctx, id); err != nil && !errors.Is(err, errPendingBusy) {
			n.log.Warn("erasure notice's audit entry still pending", "pending", id, "err", err)
		}
	}
	return nil
}
