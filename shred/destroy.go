package shred

import (
	"context"
	"fmt"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/sqlschema"
	"github.com/nats-io/nuid"
	"github.com/uptrace/bun"
)

// Proof is what a shredding leaves: which key, when, for what, and the audit
// entry recording it.
type Proof struct {
	SubjectHMAC   string    `json:"subject_hmac"`
	KeyID         string    `json:"key_id"`
	DestroyedAt   time.Time `json:"destroyed_at"`
	Scope         string    `json:"scope"`
	AuditSequence int64     `json:"audit_sequence"`
}

// Destroy deletes subject's key, so that everything sealed for the subject
// (in scope, e.g. "dead letters, retry copies, regional streams") can never
// be opened again and nothing new is sealed, tells the other instances to
// forget it, and audits the proof. A subject without a key gets a destroyed
// one, so that nothing is kept for it later. Destroying twice returns the
// first proof's key and time with the new audit sequence.
func (k *Keyring) Destroy(ctx context.Context, subject, scope string) (Proof, error) {
	sh := audit.SubjectHMAC(k.opts.SubjectKey, subject)
	now := k.opts.Now().UTC().Truncate(time.Microsecond)
	row := &keyRow{SubjectHMAC: sh, KeyID: "sk-" + nuid.Next(), KeyRef: k.opts.Keys.KeyRef(), CreatedAt: now, DestroyedAt: now, Scope: scope}
	err := k.opts.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(row).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.NewUpdate().Model((*keyRow)(nil)).Set("wrapped = ''").Set("destroyed_at = ?", now).Set("scope = ?", scope).
			Where("subject_hmac = ?", sh).Where("destroyed_at IS NULL").Exec(ctx); err != nil {
			return err
		}
		return tx.NewSelect().Model(row).Where("subject_hmac = ?", sh).Scan(ctx)
	})
	if err != nil {
		return Proof{}, fmt.Errorf("shred: destroy subject key: %w", err)
	}
	k.cache.destroyed(sh, &subjectKey{kid: row.KeyID, destroyed: true}, k.opts.Now())
	if k.opts.NATS != nil {
		if err := k.opts.NATS.Publish(invalidateSubject, []byte(sh)); err != nil {
			k.log.Warn("broadcast destroyed key", "key_id", row.KeyID, "err", err)
		}
	}
	p := Proof{SubjectHMAC: sh, KeyID: row.KeyID, DestroyedAt: row.DestroyedAt.UTC(), Scope: row.Scope}
	p.AuditSequence, err = k.opts.Audit.Append(ctx, &audit.Entry{Time: now, Event: EventKeyDestroyed, RequestID: row.KeyID,
		Source: "shred", SubjectHMAC: sh, KeyRef: row.KeyRef,
		Reasons: []string{"key_id:" + row.KeyID, "destroyed_at:" + p.DestroyedAt.Format(time.RFC3339Nano), "scope:" + scope}})
	if err != nil {
		return p, fmt.Errorf("shred: audit destruction: %w", err)
	}
	k.log.Info("subject key destroyed", "key_id", row.KeyID, "subject_hmac", sh)
	return p, nil
}

// migrateSchema brings the subject key table up to date.
func migrateSchema(ctx context.Context, db *bun.DB) error {
	return sqlschema.Migrate(ctx, db, "shred", registerSchemaV1)
}
