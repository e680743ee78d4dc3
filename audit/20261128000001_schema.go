package audit

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// This file is the first schema migration; bun/migrate takes its name and
// order from the file name. Later changes are new files, never edits here.

// entryIndexes are the secondary indexes of audit_entries. Each filter column
// is paired with seq so that a filtered query is an ordered index range scan
// that pages by sequence.
var entryIndexes = []struct{ name, cols string }{
	{"audit_entries_subject_idx", "subject_hmac, seq"},
	{"audit_entries_recipient_idx", "recipient, seq"},
	{"audit_entries_country_idx", "recipient_country, seq"},
	{"audit_entries_purpose_idx", "purpose, seq"},
	{"audit_entries_decision_idx", "decision, seq"},
	{"audit_entries_event_idx", "event, seq"},
	{"audit_entries_request_idx", "request_id, seq"},
	{"audit_entries_at_idx", "at, seq"},
}

// collateC are the indexed text columns of audit_entries.
var collateC = []string{"subject_hmac", "recipient", "recipient_country", "purpose", "decision", "event", "request_id"}

func registerSchemaV1(m *migrate.Migrations) error {
	return m.Register(schemaV1Up, schemaV1Down)
}

func schemaV1Up(ctx context.Context, db *bun.DB) error {
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, model := range []any{(*entryRow)(nil), (*headRow)(nil), (*checkpointRow)(nil), (*archiveRow)(nil)} {
			if _, err := tx.NewCreateTable().Model(model).IfNotExists().Exec(ctx); err != nil {
				return fmt.Errorf("create table: %w", err)
			}
		}
		if isPostgres(tx) {
			// Byte-order collation for the indexed identifier columns: they
			// hold ids, codes and hex digests, never prose, and "C" makes
			// index maintenance on every append markedly cheaper than the
			// database's locale collation. SQLite compares bytes already.
			for _, col := range collateC {
				if _, err := tx.ExecContext(ctx, "ALTER TABLE audit_entries ALTER COLUMN ? TYPE text COLLATE \"C\"",
					bun.Ident(col)); err != nil {
					return fmt.Errorf("collate %s: %w", col, err)
				}
			}
		}
		for _, ix := range entryIndexes {
			if _, err := tx.NewCreateIndex().Model((*entryRow)(nil)).Index(ix.name).
				ColumnExpr(ix.cols).IfNotExists().Exec(ctx); err != nil {
				return fmt.Errorf("create index %s: %w", ix.name, err)
			}
		}
		head := &headRow{ID: 1, Seq: 0, Hash: genesisHash}
		if _, err := tx.NewInsert().Model(head).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
			return fmt.Errorf("seed head: %w", err)
		}
		return nil
	})
}

func schemaV1Down(ctx context.Context, db *bun.DB) error {
	for _, model := range []any{(*archiveRow)(nil), (*checkpointRow)(nil), (*headRow)(nil), (*entryRow)(nil)} {
		if _, err := db.NewDropTable().Model(model).IfExists().Exec(ctx); err != nil {
			return fmt.Errorf("drop table: %w", err)
		}
	}
	return nil
}
