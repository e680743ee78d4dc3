package erasure

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/clearance-broker/clearance/sqlschema"
)

// Status is where a notice stands.
type Status string

// The notice states. Pending and Escalated notices are retried; the others
// are final.
const (
	// StatusPending: not acknowledged yet; retried.
	StatusPending Status = "pending"
	// StatusEscalated: unacknowledged past EscalateAfter; still retried.
	StatusEscalated Status = "escalated"
	// StatusAcknowledged: the recipient's connector accepted the notice.
	StatusAcknowledged Status = "acknowledged"
	// StatusUndeliverable: no way to reach the recipient (no connector, an
	// unknown party, a party without a public key on a connector that
	// needs one); an officer's justification closes it.
	StatusUndeliverable Status = "undeliverable"
	// StatusJustified: an officer recorded why notice is impossible or
	// disproportionate (Art. 19).
	StatusJustified Status = "justified"
)

// noticeRow is one recipient to be told of one subject's erasure.
type noticeRow struct {
	bun.BaseModel `bun:"table:erasure_notices"`

	ID             string    `bun:"id,pk"`
	SubjectHMAC    string    `bun:"subject_hmac,notnull"`
	Recipient      string    `bun:"recipient,notnull"`
	RequestIDs     string    `bun:"request_ids,notnull"` // JSON array
	ErasedAt       time.Time `bun:"erased_at,notnull"`
	Status         string    `bun:"status,notnull"`
	Attempts       int       `bun:"attempts,notnull"`
	LastError      string    `bun:"last_error,notnull"` // an error class, never a payload
	CreatedAt      time.Time `bun:"created_at,notnull"`
	NextAt         time.Time `bun:"next_at,notnull"`
	LeaseOwner     string    `bun:"lease_owner,notnull"`
	LeaseUntil     time.Time `bun:"lease_until,notnull"`
	AcknowledgedAt time.Time `bun:"acknowledged_at,nullzero"`
	EscalatedAt    time.Time `bun:"escalated_at,nullzero"`
	Officer        string    `bun:"officer,notnull"` // the justifying account's HMAC (AccountHMAC), never a name
	Justification  string    `bun:"justification,notnull"`
}

// Notice is the state of one recipient's erasure notice, as the API shows
// it.
type Notice struct {
	ID             string     `json:"id"`
	Recipient      string     `json:"recipient"`
	Status         Status     `json:"status"`
	RequestIDs     []string   `json:"request_ids"`
	Attempts       int        `json:"attempts"`
	LastError      string     `json:"last_error,omitempty"`
	ErasedAt       time.Time  `json:"erased_at"`
	CreatedAt      time.Time  `json:"created_at"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	AcknowledgedAt *time.Time `json:"acknowledged_at,omitempty"`
	EscalatedAt    *time.Time `json:"escalated_at,omitempty"`
	// Officer is the HMAC of the account that justified the notice
	// (Notifier.AccountHMAC).
	Officer   string `json:"officer,omitempty"`
	Justified bool   `json:"justified"`
}

func (r *noticeRow) notice() Notice {
	n := Notice{ID: r.ID, Recipient: r.Recipient, Status: Status(r.Status), Attempts: r.Attempts, LastError: r.LastError,
		ErasedAt: r.ErasedAt.UTC(), CreatedAt: r.CreatedAt.UTC(), Officer: r.Officer, Justified: r.Justification != ""}
	_ = json.Unmarshal([]byte(r.RequestIDs), &n.RequestIDs) // written by this package
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	n.AcknowledgedAt, n.EscalatedAt = opt(r.AcknowledgedAt), opt(r.EscalatedAt)
	if n.Status == StatusPending || n.Status == StatusEscalated {
		n.NextAttemptAt = opt(r.NextAt)
	}
	return n
}

// migrateSchema brings the notices table up to date.
func migrateSchema(ctx context.Context, db *bun.DB) error {
	return sqlschema.Migrate(ctx, db, "erasure", registerSchemaV1, registerSweeps, registerPendingEntries)
}

// claim leases up to n due notices to owner until until and returns them.
func claim(ctx context.Context, db *bun.DB, owner string, now, until time.Time, n int) ([]noticeRow, error) {
	due := db.NewSelect().Model((*noticeRow)(nil)).Column("id").
		Where("status IN (?)", bun.In([]string{string(StatusPending), string(StatusEscalated)})).
		Where("next_at <= ?", now).Where("lease_until < ?", now).Order("next_at").Limit(int64(n))
	_, err := db.NewUpdate().Model((*noticeRow)(nil)).
		Set("lease_owner = ?", owner).Set("lease_until = ?", until).
		Where("id IN (?)", due).Where("lease_until < ?", now).Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("erasure: claim notices: %w", err)
	}
	var rows []noticeRow
	err = db.NewSelect().Model(&rows).Where("lease_owner = ?", owner).Where("lease_until = ?", until).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("erasure: read claimed notices: %w", err)
	}
	return rows, nil
}
